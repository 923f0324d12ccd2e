"""The runtime (cai_edge/) never imports torch: Lambda and edge installs have none."""

import ast
import subprocess
import sys
from pathlib import Path

import cai_edge

RUNTIME = Path(cai_edge.__file__).parent


def test_importing_the_runtime_and_cli_does_not_import_torch():
    code = (
        "import sys, cai_edge, cai_edge.cli, cai_edge.models\n"
        "cai_edge.cli.build_parser()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_cli_help_runs_with_torch_unimportable():
    code = "import sys; sys.modules['torch'] = None\nfrom cai_edge.cli import main\nmain(['--help'])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "checkpoint" in out.stdout


def test_toolchain_command_without_torch_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\nfrom cai_edge.cli import main\n"
        "sys.exit(main(['checkpoint', 'x.pt', '--out', 'y.safetensors']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert 'pip install -e ".[export]"' in out.stderr and "cai-edge[" not in out.stderr


def test_no_runtime_module_imports_torch_anywhere():
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(f"{path.relative_to(RUNTIME)}:{node.lineno}")
    assert offenders == []


def test_console_script_version():
    out = subprocess.run([sys.executable, "-m", "cai_edge", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"cai-edge {cai_edge.__version__}"
