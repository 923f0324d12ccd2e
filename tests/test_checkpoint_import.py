"""Importing CAI checkpoints: pickled DataParallel models, state dicts, safetensors; refusing code."""

import importlib.util
import os
import subprocess
import sys
from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")

from cai_edge.errors import CheckpointError, CheckpointLayoutError, UnsafeCheckpointError  # noqa: E402
from cai_edge.models import load_checkpoint  # noqa: E402
from cai_edge.models.checkpoint import read_state_dict  # noqa: E402

import cai_format  # noqa: E402


@pytest.fixture(scope="module")
def cai_files(tmp_path_factory):
    """CAI-format checkpoints written by torch.save with the stand-in timm/blocks modules, then unloaded."""
    tmp = tmp_path_factory.mktemp("cai")
    src = tmp / "src"
    model = cai_format.build_cai_model(src)
    torch.manual_seed(3)
    image, magnitude = torch.randn(6, 5, 32, 32), torch.rand(6, 5) * 4 + 15
    with torch.no_grad():
        expected = model([image, magnitude]).squeeze(1)
    wrapped = torch.nn.DataParallel(model)
    files = {
        "pickled": tmp / "Mixed_Inception_z_VITAE_Base_Img_Full_New_Full.pt",
        "state_dict": tmp / "state_dict.pt",
        "dp_state_dict": tmp / "dp_state_dict.pt",
        "nested": tmp / "nested.pt",
    }
    torch.save(wrapped, files["pickled"])
    torch.save(model.state_dict(), files["state_dict"])
    torch.save(wrapped.state_dict(), files["dp_state_dict"])
    torch.save({"epoch": 3, "model": wrapped.state_dict()}, files["nested"])
    del model, wrapped
    cai_format.forget_modules(src)
    return files, image, magnitude, expected


def test_stand_in_modules_are_gone(cai_files):
    assert importlib.util.find_spec("timm") is None
    assert importlib.util.find_spec("blocks") is None


@pytest.mark.parametrize("kind", ["pickled", "state_dict", "dp_state_dict", "nested"])
def test_cai_checkpoint_reproduces_original_output(cai_files, kind):
    files, image, magnitude, expected = cai_files
    model = load_checkpoint(files[kind])
    assert not model.training
    with torch.no_grad():
        got = model(image, magnitude)
    assert got.shape == expected.shape
    assert torch.max(torch.abs(got - expected)).item() <= 1e-6


def test_pickled_model_keeps_the_duplicate_conv_once(cai_files):
    files = cai_files[0]
    raw = read_state_dict(files["pickled"])
    assert "module.inception_model.conv2d_init.weight" in raw
    assert "module.inception_model.vis_inception.0.weight" in raw
    assert len(load_checkpoint(files["pickled"]).state_dict()) == 386


def test_pickled_checkpoint_loads_in_a_python_without_timm_or_blocks(cai_files, tmp_path):
    files = cai_files[0]
    code = (
        "import sys, importlib.util\n"
        "from cai_edge.models import load_checkpoint\n"
        f"m = load_checkpoint({str(files['pickled'])!r})\n"
        "assert importlib.util.find_spec('timm') is None and importlib.util.find_spec('blocks') is None\n"
        "assert not any(n.split('.')[0] in ('timm', 'blocks') for n in sys.modules)\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "15801513"


def test_safetensors_round_trip_through_the_cli(cai_files, tmp_path):
    from cai_edge.cli import main

    files, image, magnitude, expected = cai_files
    out = tmp_path / "w.safetensors"
    assert main(["checkpoint", str(files["pickled"]), "--out", str(out)]) == 0
    with torch.no_grad():
        got = load_checkpoint(out)(image, magnitude)
    assert torch.max(torch.abs(got - expected)).item() <= 1e-6


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["shell", "eval"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _RunsShell(marker) if payload == "shell" else _RunsEval()
    path = tmp_path / "evil.pt"
    torch.save({"model": OrderedDict(w=torch.zeros(1)), "extra": evil}, path)
    with pytest.raises(UnsafeCheckpointError, match="system|eval"):
        load_checkpoint(path)
    assert not marker.exists()


def test_unmappable_layout_lists_missing_and_unexpected_keys(cai_files, tmp_path):
    state = load_checkpoint(cai_files[0]["pickled"]).state_dict()
    state = {k.replace("blocks.0.attn.", "blocks.0.PCM."): v for k, v in state.items()}
    path = tmp_path / "vitae.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointLayoutError) as info:
        load_checkpoint(path)
    assert "blocks.0.attn.qkv.weight" in info.value.missing
    assert "blocks.0.PCM.qkv.weight" in info.value.unexpected
    assert "Missing keys" in str(info.value) and "Unexpected keys" in str(info.value)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="neither a safetensors file nor a torch zip archive"):
        load_checkpoint(path)
