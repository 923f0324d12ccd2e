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
