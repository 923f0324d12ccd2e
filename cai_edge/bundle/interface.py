"""The model interface the runtime relies on, checked against a real ONNX Runtime session.

A bundle's manifest could be rewritten to match any ``model.onnx``, so the graph itself is
asked: inputs ``image (batch,5,32,32)`` and ``magnitude (batch,5)`` float32, output ``redshift
(batch,)`` float32, with a batch axis that is not fixed. Extra outputs are allowed (the runtime
asks only for those it knows); extra inputs are not (the runtime could not feed them).
"""

from __future__ import annotations

from typing import Any, Sequence

from cai_edge.bundle.manifest import IO_SPEC
from cai_edge.errors import BundleInterfaceError

_ORT_DTYPES = {"float32": "tensor(float)"}


def _describe(node: Any) -> str:
    return f"{node.name} {node.type} {list(node.shape)}"


def _check_node(node: Any, spec: dict, where: str) -> None:
    expected_type = _ORT_DTYPES[spec["dtype"]]
    if node.type != expected_type:
        raise BundleInterfaceError(f"{where}: model {spec['name']!r} is {node.type}, the runtime needs {expected_type}")
    shape, want = list(node.shape), spec["shape"]
    if len(shape) != len(want):
        raise BundleInterfaceError(f"{where}: model {spec['name']!r} has rank {len(shape)} {shape}, the runtime needs {want}")
    if isinstance(shape[0], int):
        raise BundleInterfaceError(f"{where}: model {spec['name']!r} has a fixed batch size {shape[0]}; the runtime needs a dynamic batch axis")
    for got, need in zip(shape[1:], want[1:]):
        if isinstance(got, int) and got != need:
            raise BundleInterfaceError(f"{where}: model {spec['name']!r} has shape {shape}, the runtime needs {want}")


def check_session_interface(inputs: Sequence[Any], outputs: Sequence[Any], where: str) -> None:
    """Raise :class:`BundleInterfaceError` unless the session's inputs and outputs fit the runtime's contract."""
    by_name = {n.name: n for n in inputs}
    wanted = [s["name"] for s in IO_SPEC["inputs"]]
    if sorted(by_name) != sorted(wanted):
        raise BundleInterfaceError(
            f"{where}: model inputs are {[_describe(n) for n in inputs]}; the runtime feeds exactly {wanted}"
        )
    for spec in IO_SPEC["inputs"]:
        _check_node(by_name[spec["name"]], spec, where)
    out_by_name = {n.name: n for n in outputs}
    for spec in IO_SPEC["outputs"]:
        if spec["name"] not in out_by_name:
            raise BundleInterfaceError(f"{where}: model has no output {spec['name']!r} (outputs: {[_describe(n) for n in outputs]})")
        _check_node(out_by_name[spec["name"]], spec, where)
