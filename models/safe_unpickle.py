"""Read a ``torch.save`` archive without running any code from it.

A CAI checkpoint is a whole pickled ``nn.DataParallel(ViT_Astro)``. ``torch.load`` would
import timm and the CAI ``blocks`` package and run whatever globals the pickle names. This
unpickler instead

* rebuilds tensors itself from the archive's raw storages,
* turns every class from a model namespace (``torch.nn``, ``timm``, ``blocks`` ...) into an
  inert :class:`PicklePlaceholder` whose ``__dict__`` holds the pickled state
  (``_parameters``, ``_buffers``, ``_modules``),
* and refuses every other global (``os.system``, ``builtins.eval`` ...) with
  :class:`~cai_edge.errors.UnsafeCheckpointError` before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any, Callable

import torch

from cai_edge.errors import CheckpointError, UnsafeCheckpointError
from cai_edge.io.limits import zip_bomb_reason

# Module namespaces whose classes become placeholders. A placeholder has no behaviour, so
# naming any class in these namespaces is harmless; anything else is refused.
_PLACEHOLDER_NAMESPACES = (
    "torch.nn.modules.",
    "torch.nn.parallel.",
    "timm.",
    "blocks.",
    "models_mae",
    "models_vit",
    "util.",
    "__main__",
)
_PLACEHOLDER_TORCH_NAMES = {"device", "Size", "Tensor"}

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class PicklePlaceholder:
    """Inert stand-in for a pickled class: keeps constructor args and state, runs nothing."""

    pickled_module = ""
    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any):
        self.pickled_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}  # (dict, slots) form
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.pickled_state = state

    def __repr__(self) -> str:
        return f"<placeholder {self.pickled_module}.{self.pickled_name}>"


class _StorageType:
    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


class _Storage:
    def __init__(self, flat: torch.Tensor):
        self.flat = flat


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tensor_view(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    """A view of a storage, after checking that it is a well-formed view that stays inside it.

    Refused: non-integer or negative sizes, strides or offsets; views reaching past the storage;
    and views with more elements than their storage (zero-stride tricks that make a few bytes
    look like gigabytes to everything that later reads the tensor).
    """
    if not isinstance(storage, _Storage):
        raise CheckpointError("malformed checkpoint: a tensor refers to no storage")
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride) <= 16):
        raise CheckpointError(f"malformed checkpoint: tensor size {size!r:.80} and stride {stride!r:.80} do not match")
    if not (_is_index(offset) and all(map(_is_index, size)) and all(map(_is_index, stride))):
        raise CheckpointError(f"malformed checkpoint: negative or non-integer tensor layout (offset {offset!r:.40}, size {size!r:.80}, stride {stride!r:.80})")
    numel = storage.flat.numel()
    elements = 1
    for n in size:
        elements *= n
    if elements:
        last = offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= numel:
            raise CheckpointError(f"malformed checkpoint: a tensor {tuple(size)} reaches element {last} of a storage of {numel}")
        if elements > numel:
            raise CheckpointError(f"malformed checkpoint: a tensor {tuple(size)} has more elements than its storage ({numel})")
    return storage.flat.as_strided(tuple(size), tuple(stride), offset)


class _LoadGlobals:
    """The globals one load may name, made afresh for every load.

    Every function and class a pickle can reach is created here, per load: a pickle that sets
    attributes on them (``BUILD`` with slot state can ``setattr`` on any object it holds) changes
    only its own load, never the loader that later reads a valid file.
    """

    def __init__(self) -> None:
        self.placeholders: dict[tuple[str, str], type] = {}

        def rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
            return tensor_view(storage, offset, size, stride)

        def rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
            return data

        def rebuild_from_type_v2(func, new_type, args, state):
            if func is not rebuild_tensor_v2 or not isinstance(args, tuple):
                raise UnsafeCheckpointError("checkpoint rebuilds a tensor with an unexpected function")
            return rebuild_tensor_v2(*args)

        self.rebuild_tensor_v2 = rebuild_tensor_v2
        self.table: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): rebuild_from_type_v2,
            ("torch.nn.parameter", "Parameter"): self.placeholder("torch.nn.parameter", "Parameter"),
        }

    def placeholder(self, module: str, name: str) -> type:
        key = (module, name)
        if key not in self.placeholders:
            self.placeholders[key] = type(
                name, (PicklePlaceholder,), {"pickled_module": module, "pickled_name": name, "__module__": __name__}
            )
        return self.placeholders[key]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the ``data.pkl`` of a torch zip archive; see the module docstring."""

    def __init__(self, file: io.BytesIO, load_storage: Callable[[str, _StorageType, Any], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage
        self._globals = _LoadGlobals()

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles name Python 2's module
            module = "builtins"
        if (module, name) in self._globals.table:
            return self._globals.table[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and (name in _PLACEHOLDER_TORCH_NAMES or isinstance(getattr(torch, name, None), torch.dtype)):
            return self._globals.placeholder(module, name)
        if module.startswith(_PLACEHOLDER_NAMESPACES) or module in {n.rstrip(".") for n in _PLACEHOLDER_NAMESPACES}:
            return self._globals.placeholder(module, name)
        raise UnsafeCheckpointError(
            f"refusing to load: the checkpoint names the global '{module}.{name}', which could run code. "
            "Only tensors and model-state containers are read from checkpoints."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == "storage"):
            raise CheckpointError(f"malformed checkpoint: unknown persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type in checkpoint: {storage_type!r:.80}")
        return self._load_storage(key, storage_type, pid[4] if len(pid) > 4 else None)


# Everything a checkpoint may hold once read; AstroMAE in float32 is 63 MB (190 MB with Adam states).
MAX_CHECKPOINT_BYTES = 1 << 30


def load_torch_archive(path: str) -> Any:
    """Unpickle a ``torch.save`` zip archive safely; returns plain containers, tensors and placeholders.

    Sizes are checked before anything is inflated: the members together may declare at most
    :data:`MAX_CHECKPOINT_BYTES`, and each storage must be exactly as large as the pickle says.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a torch zip archive ({exc})") from exc
    with archive:
        infos = {i.filename: i for i in archive.infolist()}
        declared = sum(i.file_size for i in infos.values())
        if declared > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(
                f"{path}: members declare {declared >> 20} MB once decompressed, over the {MAX_CHECKPOINT_BYTES >> 20} MB "
                "limit for a checkpoint; refusing (a decompression bomb?)"
            )
        for info in infos.values():
            reason = zip_bomb_reason(info)
            if reason:
                raise CheckpointError(f"{path}: {reason}; torch.save never compresses tensors. Refusing.")
        pickles = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in infos:
            byteorder = archive.read(f"{prefix}byteorder")[:16].decode(errors="replace").strip()
        cache: dict[str, _Storage] = {}

        def load_storage(key: str, storage_type: _StorageType, numel: Any) -> _Storage:
            if key not in cache:
                member = f"{prefix}data/{key}"
                if member not in infos:
                    raise CheckpointError(f"{path}: storage {key} is missing from the archive")
                itemsize = torch.empty(0, dtype=storage_type.dtype).element_size()
                size = infos[member].file_size
                if size % itemsize or (_is_index(numel) and numel * itemsize != size):
                    raise CheckpointError(f"{path}: storage {key} holds {size} bytes, which is not {numel!r:.20} × {itemsize}-byte elements")
                raw = bytearray(archive.read(member))
                flat = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
                if byteorder != "little" and flat.element_size() > 1:
                    flat = torch.from_numpy(flat.numpy().byteswap().copy())
                cache[key] = _Storage(flat)
            return cache[key]

        return RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()
