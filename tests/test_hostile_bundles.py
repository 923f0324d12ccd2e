"""Bundles and checkpoints made to break the runtime: swapped models, forged manifests, bombs, poisoned pickles.

Every case must end in cai-edge's own error type — one line, exit 2 at the command line — or,
for a model that answers garbage for some galaxies, in rows that say so. Never a plain ``ok``.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import time
import types
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from bundle_helpers import tiny_bundle  # noqa: E402
from cai_edge.errors import BundleError, ModelOutputError  # noqa: E402
from cai_edge.export.bundle_writer import write_bundle  # noqa: E402
from cai_edge.results.files import read_results  # noqa: E402
from cai_edge.predictor import Predictor  # noqa: E402
from cai_edge.preprocessing import Preprocessing  # noqa: E402
from result_helpers import MAGS, peak_rss_of, predict_process, write_partitions  # noqa: E402


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cai_edge", *map(str, args)], capture_output=True, text=True, timeout=300)


def _assert_clean_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _graph(output_type=TensorProto.FLOAT, output_shape=("batch",), nodes=None, inputs=None) -> onnx.ModelProto:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 5, 32, 32])
    magnitude = helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", 5])
    redshift = helper.make_tensor_value_info("redshift", output_type, list(output_shape))
    nodes = nodes or [helper.make_node("ReduceSum", ["magnitude", "axes"], ["s"], keepdims=0),
                      helper.make_node("Cast", ["s"], ["redshift"], to=output_type)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "forged", inputs or [image, magnitude], [redshift], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _swap_model(bundle_dir: Path, model_bytes: bytes) -> Path:
    """Replace model.onnx and recompute the manifest's size and sha256, as an attacker would."""
    (bundle_dir / "model.onnx").write_bytes(model_bytes)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = {"bytes": len(model_bytes), "sha256": hashlib.sha256(model_bytes).hexdigest()}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    return bundle_dir


def _fields(name="forged") -> dict:
    return {"name": name, "variant": "fp32", "preprocessing": Preprocessing().to_dict()}


# 15. the model's interface
@pytest.mark.parametrize("case", ["scalar", "fixed-one", "int64", "not-onnx", "extra-input"])
def test_swapped_models_are_refused_by_verify_and_predict(tmp_path, case):
    bundle = tiny_bundle(tmp_path / "b")
    if case == "scalar":
        model = _graph(output_shape=(), nodes=[helper.make_node("ReduceSum", ["magnitude"], ["redshift"], keepdims=0)])
    elif case == "fixed-one":
        model = _graph(output_shape=(1,), nodes=[helper.make_node("ReduceSum", ["magnitude"], ["r0"], keepdims=0),
                                                 helper.make_node("Unsqueeze", ["r0", "axis0"], ["redshift"])])
        model.graph.initializer.append(helper.make_tensor("axis0", TensorProto.INT64, [1], [0]))
    elif case == "int64":
        model = _graph(output_type=TensorProto.INT64)
    elif case == "extra-input":
        extra = helper.make_tensor_value_info("flags", TensorProto.FLOAT, ["batch"])
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 5, 32, 32])
        magnitude = helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", 5])
        model = _graph(inputs=[image, magnitude, extra])
    data = b"this is not an ONNX model" * 10 if case == "not-onnx" else model.SerializeToString()
    _swap_model(bundle, data)
    line = _assert_clean_refusal(_cli("bundle", "verify", bundle))
    assert ("ONNX Runtime" in line) if case == "not-onnx" else ("runtime" in line)
    write_partitions(tmp_path / "in", 1, 5)
    proc = predict_process(tmp_path / "in", "--bundle", bundle, "--out", tmp_path / "z.csv")
    _assert_clean_refusal(proc)
    assert not (tmp_path / "z.csv").exists()
    with pytest.raises(BundleError):
        Predictor(bundle)


def test_a_model_that_lies_about_its_output_shape_is_caught_per_batch(tmp_path):
    # declares redshift (batch,) but returns batch + 1 numbers, a length no shape inference can see
    nodes = [helper.make_node("Shape", ["image"], ["s"]),
             helper.make_node("Slice", ["s", "start", "stop"], ["n"]),
             helper.make_node("Add", ["n", "one"], ["n1"]),
             helper.make_node("ReduceSum", ["magnitude"], ["total"], keepdims=0),
             helper.make_node("Expand", ["total", "n1"], ["redshift"])]
    model = _graph(nodes=nodes)
    model.graph.initializer.extend([helper.make_tensor("start", TensorProto.INT64, [1], [0]),
                                    helper.make_tensor("stop", TensorProto.INT64, [1], [1]),
                                    helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    bundle = write_bundle(tmp_path / "liar", model, _fields("liar"))
    p = Predictor(bundle, threads=1)
    with pytest.raises(ModelOutputError, match=r"for a batch of 4 galaxies"):
        p.predict(np.zeros((4, 5, 32, 32), np.float32), np.tile(MAGS, (4, 1)))
    write_partitions(tmp_path / "in", 1, 5)
    _assert_clean_refusal(predict_process(tmp_path / "in", "--bundle", bundle, "--out", tmp_path / "z.csv"))


def test_non_finite_redshifts_are_rows_that_say_so(tmp_path):
    # redshift = log(mag_u - 19): NaN for mag_u < 19, -inf at 19, a number above
    nodes = [helper.make_node("Slice", ["magnitude", "start", "stop", "axes"], ["u"]),
             helper.make_node("Squeeze", ["u", "axes"], ["u1"]),
             helper.make_node("Sub", ["u1", "nineteen"], ["d"]),
             helper.make_node("Log", ["d"], ["redshift"])]
    model = _graph(nodes=nodes)
    model.graph.initializer.extend([helper.make_tensor("start", TensorProto.INT64, [1], [0]),
                                    helper.make_tensor("stop", TensorProto.INT64, [1], [1]),
                                    helper.make_tensor("nineteen", TensorProto.FLOAT, [], [19.0])])
    bundle = write_bundle(tmp_path / "nan", model, _fields("nan"))
    mags = np.tile(MAGS, (3, 1))
    mags[:, 0] = [18.0, 19.0, 19.5]
    z = Predictor(bundle, threads=1).predict(np.zeros((3, 5, 32, 32), np.float32), mags)
    assert np.isnan(z[0]) and np.isnan(z[1]) and z[2] == pytest.approx(np.log(0.5))
    folder = tmp_path / "in"
    folder.mkdir()
    from cai_edge.io.npz_partitions import write_npz_partition

    write_npz_partition(folder / "p.npz", np.zeros((3, 5, 32, 32), np.float32), mags, ["neg", "zero", "fine"])
    proc = predict_process(folder, "--bundle", bundle, "--out", tmp_path / "z.csv")
    assert proc.returncode == 1
    status = dict(zip(read_results(tmp_path / "z.csv")["id"], read_results(tmp_path / "z.csv")["status"]))
    assert status == {"neg": "nonfinite_prediction", "zero": "nonfinite_prediction", "fine": "ok"}


# 16. the manifest's preprocessing
@pytest.mark.parametrize("change, needle", [
    (lambda p: p.pop("image_transform"), "lacks image_transform"),
    (lambda p: p.pop("magnitude_offset"), "lacks magnitude_offset"),
    (lambda p: p.update(image_softening=[0, 1, 1, 1, 1]), "image_softening"),
    (lambda p: p.update(magnitude_scale=[1, 1, 0, 1, 1]), "magnitude_scale"),
    (lambda p: p.update(crop=64), "crop"),
    (lambda p: p.update(image_units="count"), "image_units"),
    (lambda p: p.update(band_order=["g", "r", "i", "z", "u"]), "band order"),
    (lambda p: p.update(flip="yes"), "does not know: flip"),
    (lambda p: p.update(magnitude_offset=[19, 17, "x", 16, 16]), "magnitude_offset"),
])
def test_bad_preprocessing_in_a_manifest_is_refused(tmp_path, change, needle):
    bundle = tiny_bundle(tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest["preprocessing"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    line = _assert_clean_refusal(_cli("bundle", "verify", bundle))
    assert needle in line


# 19. odd manifests, each refused with one line
@pytest.mark.parametrize("edit", [
    lambda m: m.update(files=[]),
    lambda m: m.update(files={"model.onnx": "x"}),
    lambda m: m.update(files={"model.onnx": {"bytes": "12", "sha256": 5}}),
    lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}}),
    lambda m: m.update(schema_version=True),
    lambda m: m.update(schema_version=0),
    lambda m: m.update(schema_version=-5),
    lambda m: m.update(name={"a": 1}),
    lambda m: m.update(variant=["fp32"]),
    lambda m: m.update(inputs=[]),
    lambda m: m.update(outputs="redshift"),
    lambda m: m.update(preprocessing=None),
])
def test_odd_manifests_are_refused_in_one_line(tmp_path, edit):
    bundle = tiny_bundle(tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _assert_clean_refusal(_cli("bundle", "verify", bundle))


def test_deeply_nested_manifest_and_symlink_loop_are_refused(tmp_path):
    bundle = tiny_bundle(tmp_path / "b")
    (bundle / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    _assert_clean_refusal(_cli("bundle", "verify", bundle))
    looped = tiny_bundle(tmp_path / "c")
    (looped / "l1").symlink_to(looped / "l2")
    (looped / "l2").symlink_to(looped / "l1")
    manifest = json.loads((looped / "manifest.json").read_text())
    manifest["files"]["l1/extra.bin"] = {"bytes": 1, "sha256": "0" * 64}
    (looped / "manifest.json").write_text(json.dumps(manifest))
    _assert_clean_refusal(_cli("bundle", "verify", looped))


# 17. bombs, refused before they inflate
def _deflated_zeros(archive: zipfile.ZipFile, name: str, size: int) -> None:
    with archive.open(name, "w", force_zip64=True) as fh:
        block = bytes(1 << 24)
        while size:
            fh.write(block[: min(size, len(block))])
            size -= min(size, len(block))


@pytest.mark.parametrize("honest_size", [True, False])
def test_bundle_zip_bomb_is_refused_in_bounded_memory(tmp_path, honest_size):
    size = 1_300_000_000
    manifest = json.loads((tiny_bundle(tmp_path / "b") / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = {"bytes": size if honest_size else 1000, "sha256": "0" * 64}
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        _deflated_zeros(archive, "model.onnx", size)
    assert path.stat().st_size < 10 * 2**20
    started = time.perf_counter()
    code = (
        "from cai_edge.bundle import open_bundle\n"
        "from cai_edge.errors import BundleError\n"
        "try:\n"
        f"    open_bundle({str(path)!r})\n"
        "except BundleError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    peak, stdout = peak_rss_of(code)
    assert "REFUSED" in stdout and peak < 1024
    assert time.perf_counter() - started < 60


def _torch_archive(path: Path, pickled: bytes, storages: dict[str, bytes], deflate: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    if deflate:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, size in deflate.items():
                _deflated_zeros(archive, f"archive/data/{key}", size)
    return path


class _Storage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


def _tensor_pickle(obj) -> bytes:
    """Pickle ``obj`` where :class:`_Storage` stands for a torch storage, as torch.save writes it."""
    torch = pytest.importorskip("torch")

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _Storage):
                return ("storage", torch.FloatStorage, o.key, "cpu", o.numel)
            return None

    buffer = io.BytesIO()
    P(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class _View:
    """Reduces to ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride)``."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        import torch._utils

        return (torch._utils._rebuild_tensor_v2, self.args)


def test_checkpoint_bomb_is_refused_in_bounded_memory(tmp_path):
    pytest.importorskip("torch")
    path = _torch_archive(tmp_path / "bomb.pt", _tensor_pickle({"w": _View(_Storage("0", 325_000_000), 0, (325_000_000,), (1,))}),
                          {}, deflate={"0": 1_300_000_000})
    assert path.stat().st_size < 10 * 2**20
    code = (
        "from cai_edge.models.checkpoint import read_state_dict\n"
        "from cai_edge.errors import CheckpointError\n"
        "try:\n"
        f"    read_state_dict({str(path)!r})\n"
        "except CheckpointError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    peak, stdout = peak_rss_of(code)
    assert "REFUSED" in stdout and peak < 1024


@contextmanager
def _stub_module_class(name: str):
    """A class ``blocks.<name>`` (a CAI module namespace) that pickle can name while the block runs."""
    blocks = types.ModuleType("blocks")
    cls = type(name, (), {"__module__": "blocks"})
    setattr(blocks, name, cls)
    sys.modules["blocks"] = blocks
    try:
        yield cls
    finally:
        del sys.modules["blocks"]


# 18. nothing a file contains may change the loader
def test_a_poisoning_pickle_cannot_break_later_loads(tmp_path):
    torch = pytest.importorskip("torch")
    from cai_edge.errors import CheckpointError
    from cai_edge.models.checkpoint import read_state_dict

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, good)
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD (None, {"__defaults__": ()}) → setattr on the function
    poison = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b."
    bad = _torch_archive(tmp_path / "poison.pt", poison, {})
    with pytest.raises(CheckpointError):
        read_state_dict(bad)
    assert torch.equal(read_state_dict(good)["w"], torch.arange(6.0).reshape(2, 3))
    # a placeholder class: BUILD sets blocks.Net.__setstate__, which would swallow the next file's module state
    poison = (b"\x80\x02cblocks\nNet\nN}X\x0c\x00\x00\x00__setstate__ctorch._utils\n_rebuild_parameter\ns\x86b.")
    with pytest.raises(CheckpointError):
        read_state_dict(_torch_archive(tmp_path / "poison2.pt", poison, {}))
    with _stub_module_class("Net") as Net:
        net = Net()
        net.__dict__ = {"_parameters": {"w": _View(_Storage("0", 4), 0, (2, 2), (2, 1))}, "_modules": {}}
        model = _torch_archive(tmp_path / "model.pt", _tensor_pickle(net), {"0": np.arange(4, dtype="<f4").tobytes()})
    assert read_state_dict(model)["w"].tolist() == [[0, 1], [2, 3]]


def test_a_tiny_checkpoint_of_huge_zero_stride_views_is_refused_fast(tmp_path):
    torch = pytest.importorskip("torch")
    from cai_edge.errors import CheckpointError
    from cai_edge.models import load_checkpoint

    huge = torch.zeros(1).expand(100_000, 10_000)
    path = tmp_path / "tiny.pt"
    torch.save({"inception_model.conv2d_init.weight": huge, "inception_model.vis_inception.0.weight": huge}, path)
    assert path.stat().st_size < 2000
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        load_checkpoint(path)
    assert time.perf_counter() - started < 5


# 19. malformed checkpoints end as one line and exit 2
def _self_referencing_checkpoint(path: Path) -> Path:
    with _stub_module_class("Loop") as Loop:
        node = Loop()
        node.__dict__ = {"_parameters": {}, "_modules": {"again": node}}
        return _torch_archive(path, _tensor_pickle(node), {})


@pytest.mark.parametrize("case", ["out-of-bounds", "negative-stride", "negative-offset", "self-referencing", "safetensors", "recursive-list"])
def test_malformed_checkpoints_exit_2_in_one_line(tmp_path, case):
    pytest.importorskip("torch")
    path = tmp_path / f"{case}.pt"
    storage = {"0": np.arange(4, dtype="<f4").tobytes()}
    if case == "out-of-bounds":
        _torch_archive(path, _tensor_pickle({"w": _View(_Storage("0", 4), 0, (10,), (1,))}), storage)
    elif case == "negative-stride":
        _torch_archive(path, _tensor_pickle({"w": _View(_Storage("0", 4), 3, (4,), (-1,))}), storage)
    elif case == "negative-offset":
        _torch_archive(path, _tensor_pickle({"w": _View(_Storage("0", 4), -2, (2,), (1,))}), storage)
    elif case == "self-referencing":
        _self_referencing_checkpoint(path)
    elif case == "recursive-list":
        loop: list = []
        loop.append(loop)
        _torch_archive(path, _tensor_pickle({"model": {"state_dict": loop}}), {})
    else:
        path = tmp_path / "bad.safetensors"
        path.write_bytes((40).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [1000000' + b"\0" * 8)
    _assert_clean_refusal(_cli("checkpoint", path, "--out", tmp_path / "w.safetensors"))
    assert not (tmp_path / "w.safetensors").exists()
