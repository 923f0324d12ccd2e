"""Large blocks go back to the system when freed, so long runs do not fragment the heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from cai_edge.memory import return_large_blocks_to_the_system

try:
    import resource
except ImportError:  # not on Windows
    resource = None

_PROBE = r"""
import sys, numpy as np
from cai_edge.memory import return_large_blocks_to_the_system
def rss(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
if sys.argv[1] == "set":
    assert return_large_blocks_to_the_system()
big = np.ones(30_000_000 // 8); del big  # glibc now serves blocks under 30 MB from its heap, unless told otherwise
blocks = [np.ones(5_000_000 // 8) for _ in range(6)]
before = rss()
del blocks[:5]  # 25 MB freed below the last block: a heap cannot give it back
print(before - rss())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_partition_sized_blocks_leave_the_process():
    def dropped(mode: str) -> float:
        return float(subprocess.run([sys.executable, "-c", _PROBE, mode], check=True, capture_output=True, text=True).stdout)

    assert dropped("set") > 20  # MB given back
    assert dropped("default") < 5  # what the setting prevents: the heap keeps it


_REFAULT_PROBE = r"""
import resource, sys, numpy as np
from cai_edge.memory import return_large_blocks_to_the_system
if sys.argv[1] == "set":
    assert return_large_blocks_to_the_system()
else:  # the mmap threshold alone, as cai-edge set it before: glibc's trim threshold then stays at 128 kB
    import ctypes, ctypes.util
    assert ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 4 << 20) == 1
def batch(): return np.ones(3_000_000 // 8).sum()  # a batch-sized block under the mmap threshold, freed at the heap's top
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> int:
    """Page faults of 20 batch-sized blocks in a fresh process; glibc's heap in small pages (huge pages, which
    fault 2 MB at a time, off), and no malloc setting of this environment's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    clean["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=0"
    run = subprocess.run([sys.executable, "-c", _REFAULT_PROBE, mode], check=True, capture_output=True, text=True, env={**clean, **env})
    return int(run.stdout)


_PAGES = 20 * 3_000_000 // resource.getpagesize() if resource else 0


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_blocks_freed_batch_after_batch_are_reused_not_faulted_in_again():
    kept, refaulted = _faults("set"), _faults("mmap-threshold-only")
    assert refaulted > _PAGES // 10  # what the trim threshold prevents: each block faulted in anew (fewer with huge pages)
    assert kept * 10 < refaulted  # the freed pages stay in the heap and are reused


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_trim_threshold_the_user_set_is_left_as_it_is():
    assert _faults("set", MALLOC_TRIM_THRESHOLD_="131072") > _PAGES // 10  # theirs (glibc's 128 kB) stays in force
    assert _faults("set", GLIBC_TUNABLES="glibc.malloc.hugetlb=0:glibc.malloc.trim_threshold=131072") > _PAGES // 10


def test_settings_out_of_a_c_int_are_refused():
    with pytest.raises(ValueError, match="kept_free"):
        return_large_blocks_to_the_system(kept_free=4 << 30)  # would wrap to 0: trim on every free


_DASK_TASK = r"""
import sys, numpy as np
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.predictor import Predictor
from cai_edge.scale_out.dask_engine import predict_part
def rss(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
rng = np.random.default_rng(0)
write_npz_partition(sys.argv[1] + "/p.npz", rng.gamma(1.5, 0.2, (8, 5, 32, 32)).astype(np.float32), rng.uniform(16, 20, (8, 5)).astype(np.float32))
# what a Dask worker runs for a task, in a process that is the worker's, not cai-edge's
assert predict_part(Predictor().reference(), [sys.argv[1] + "/p.npz", "--out", sys.argv[1] + "/o.csv", "--quiet"]) in (0, 1)
big = np.ones(30_000_000 // 8); del big
blocks = [np.ones(5_000_000 // 8) for _ in range(6)]
before = rss()
del blocks[:5]
print(before - rss())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_dask_workers_task_leaves_the_workers_malloc_settings_alone(tmp_path):
    dropped = float(subprocess.run([sys.executable, "-c", _DASK_TASK, str(tmp_path)], check=True, capture_output=True, text=True).stdout)
    assert (tmp_path / "o.csv").exists()
    assert dropped < 5  # glibc's own behaviour: the heap keeps the freed 25 MB (with cai-edge's settings it would drop > 20)
