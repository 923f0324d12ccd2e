"""Import AstroMAE weights from the checkpoints astronomers already have.

Accepted, by content rather than by file name:

* the CAI checkpoint: a pickled ``nn.DataParallel(ViT_Astro)`` written by ``torch.save(model)``,
  read by :mod:`cai_edge.models.safe_unpickle` (no timm, no CAI ``blocks``, no code run);
* a ``torch.save`` of a state dict, with or without ``module.`` prefixes, or of a dict that holds
  it under ``model`` / ``state_dict`` / ``model_state_dict``;
* a safetensors file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cai_edge.errors import CheckpointError, CheckpointLayoutError
from cai_edge.models.astromae import AstroMAE
from cai_edge.models.safe_unpickle import PicklePlaceholder, load_torch_archive

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# The CAI model registers its first 1×1 conv twice: as conv2d_init and as vis_inception.0.
_DUPLICATE_PREFIXES = {"inception_model.conv2d_init.": "inception_model.vis_inception.0."}
_LIST_LIMIT = 20


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _module_state(module: PicklePlaceholder, prefix: str, out: dict[str, torch.Tensor], path: tuple[int, ...] = ()) -> None:
    """Walk a pickled module's ``_parameters``, ``_buffers`` and ``_modules`` like ``state_dict()`` does."""
    if id(module) in path or len(path) > 64:
        raise CheckpointError(f"malformed checkpoint: module {prefix.rstrip('.') or '(root)'} contains itself or nests too deeply")
    if not isinstance(module, PicklePlaceholder):
        raise CheckpointError(f"malformed checkpoint: {prefix.rstrip('.')} is a {type(module).__name__}, not a module")
    state = module.__dict__
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for name, tensor in _mapping(state.get("_parameters"), prefix).items():
        if tensor is not None:
            out[prefix + str(name)] = _tensor(tensor, prefix + str(name))
    for name, tensor in _mapping(state.get("_buffers"), prefix).items():
        if tensor is not None and name not in non_persistent:
            out[prefix + str(name)] = _tensor(tensor, prefix + str(name))
    for name, child in _mapping(state.get("_modules"), prefix).items():
        if child is not None:
            _module_state(child, f"{prefix}{name}.", out, path + (id(module),))


def _mapping(value: Any, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CheckpointError(f"malformed checkpoint: {where or '(root)'} holds a {type(value).__name__} where a dict belongs")
    return value


def _tensor(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"malformed checkpoint: {name} is a {type(value).__name__}, not a tensor")
    return value


def _state_from_object(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, PicklePlaceholder) and "_modules" in obj.__dict__:
        out: dict[str, torch.Tensor] = {}
        _module_state(obj, "", out)
        return out
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        for key in _NESTED_KEYS:
            if key in obj:
                return _state_from_object(obj[key], f"{where}[{key!r}]")
    raise CheckpointError(
        f"{where}: found {type(obj).__name__}, not a model, a state dict, or a dict holding one under "
        f"{', '.join(_NESTED_KEYS)}"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint by name, exactly as stored (no renaming)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if _is_safetensors(path):
            from safetensors.torch import load_file

            return load_file(str(path))
        import zipfile

        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path}: neither a safetensors file nor a torch zip archive. Legacy (pre-1.6) torch pickles "
                "are not read; re-save with a current torch, or convert to safetensors."
            )
        return _state_from_object(load_torch_archive(str(path)), str(path))
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: malformed checkpoint (it refers to itself or nests too deeply)") from None
    except Exception as exc:  # pickle, zip, zlib and safetensors errors on a hostile or corrupt file
        raise CheckpointError(f"{path}: malformed checkpoint ({type(exc).__name__}: {str(exc)[:300]})") from None


def normalize_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Strip DataParallel ``module.`` prefixes and fold the CAI duplicate conv into one entry.

    With ``expected`` (the model's own state), a duplicate whose shape is not the expected one is
    left for the layout check to report, rather than compared element by element.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    for dup, canonical in _DUPLICATE_PREFIXES.items():
        for key in [k for k in out if k.startswith(dup)]:
            target = canonical + key[len(dup) :]
            value = out.pop(key)
            if target not in out:
                out[target] = value
            elif expected is not None and target in expected and tuple(value.shape) != tuple(expected[target].shape):
                out[key] = value  # mis-shaped: load_state_into reports it; never compared element by element
            elif out[target].shape != value.shape or not torch.equal(out[target], value):
                raise CheckpointError(f"{key} and {target} should be the same tensor but differ")
    return out


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f", … ({len(names) - _LIST_LIMIT} more)" if len(names) > _LIST_LIMIT else "")


def load_state_into(model: AstroMAE, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> AstroMAE:
    """Copy ``state`` into ``model``, failing with every missing, unexpected and mis-shaped key listed."""
    expected = model.state_dict()
    state = normalize_state_dict(state, expected)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = [f"{source} does not map onto AstroMAE."]
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {_listing(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {_listing(unexpected)}.")
        if mis_shaped:
            parts.append(f"Wrong shapes ({len(mis_shaped)}): {_listing(mis_shaped)}.")
        raise CheckpointLayoutError(" ".join(parts), missing, unexpected + mis_shaped)
    converted = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=False)
    return model


def load_checkpoint(path: str | Path) -> AstroMAE:
    """An :class:`AstroMAE` in eval mode with the weights of ``path`` (CAI pickle, state dict or safetensors)."""
    model = AstroMAE()
    load_state_into(model, read_state_dict(path), source=str(path))
    return model.eval()
