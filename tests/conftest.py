import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Sessions keep ONNX Runtime's optimized graphs in a per-machine cache (cai_edge.optimized_graphs);
# the suite gives it a folder of its own, so it runs with the cache on, as users do, and leaves nothing behind.
_OPTIMIZED_GRAPHS = tempfile.mkdtemp(prefix="cai-edge-optimized-")
os.environ.setdefault("CAI_EDGE_OPTIMIZED_GRAPHS", _OPTIMIZED_GRAPHS)
atexit.register(shutil.rmtree, _OPTIMIZED_GRAPHS, True)

# The suite's rows are the reference engine's (ONNX Runtime) wherever the openvino extra happens to be
# installed, as on a machine without it: `auto`, the default, would probe each of the suite's many bundles
# and take OpenVINO's slightly different redshifts on some machines. The tests of `auto` and of the
# default itself unset this (tests/test_backends.py).
os.environ.setdefault("CAI_EDGE_BACKEND", "onnxruntime")

# Property tests are deterministic for everyone: the default profile derandomizes hypothesis (its
# examples follow from each test alone; no examples database), so the README's test command never
# finds a new example on another machine. Developers opt into fresh random examples, replayed from
# the local database once found, with HYPOTHESIS_PROFILE=random (docs/getting-started.md).
# Loaded here, before any test module builds its own settings(), so theirs inherit it.
from hypothesis import settings  # noqa: E402

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
