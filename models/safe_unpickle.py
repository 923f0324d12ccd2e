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


_placeholder_classes: dict[tuple[str, str], type] = {}


def placeholder_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _placeholder_classes:
        _placeholder_classes[key] = type(
            name, (PicklePlaceholder,), {"pickled_module": module, "pickled_name": name, "__module__": __name__}
        )
    return _placeholder_classes[key]


class _StorageType:
    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


class _Storage:
    def __init__(self, flat: torch.Tensor):
        self.flat = flat


def _rebuild_tensor_v2(storage: _Storage, offset: int, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise CheckpointError("malformed checkpoint: a tensor refers to no storage")
    return storage.flat.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any):
    if func is not _rebuild_tensor_v2:
        raise UnsafeCheckpointError("checkpoint rebuilds a tensor with an unexpected function")
    return func(*args)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): placeholder_class("torch.nn.parameter", "Parameter"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the ``data.pkl`` of a torch zip archive; see the module docstring."""

    def __init__(self, file: io.BytesIO, load_storage: Callable[[str, _StorageType], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles name Python 2's module
            module = "builtins"
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and (name in _PLACEHOLDER_TORCH_NAMES or isinstance(getattr(torch, name, None), torch.dtype)):
            return placeholder_class(module, name)
        if module.startswith(_PLACEHOLDER_NAMESPACES) or module in {n.rstrip(".") for n in _PLACEHOLDER_NAMESPACES}:
            return placeholder_class(module, name)
        raise UnsafeCheckpointError(
            f"refusing to load: the checkpoint names the global '{module}.{name}', which could run code. "
            "Only tensors and model-state containers are read from checkpoints."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == "storage"):
            raise CheckpointError(f"malformed checkpoint: unknown persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type in checkpoint: {storage_type!r}")
        return self._load_storage(key, storage_type)


def load_torch_archive(path: str) -> Any:
    """Unpickle a ``torch.save`` zip archive safely; returns plain containers, tensors and placeholders."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: not a torch zip archive ({exc})") from exc
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        cache: dict[str, _Storage] = {}

        def load_storage(key: str, storage_type: _StorageType) -> _Storage:
            if key not in cache:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise CheckpointError(f"{path}: storage {key} is missing from the archive")
                raw = bytearray(archive.read(member))
                flat = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
                if byteorder != "little" and flat.element_size() > 1:
                    flat = torch.from_numpy(flat.numpy().byteswap().copy())
                cache[key] = _Storage(flat)
            return cache[key]

        return RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()
