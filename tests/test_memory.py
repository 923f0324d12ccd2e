"""Large blocks go back to the system when freed, so long runs do not fragment the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

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


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_blocks_freed_batch_after_batch_are_reused_not_faulted_in_again():
    def faults(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", _REFAULT_PROBE, mode], check=True, capture_output=True, text=True).stdout)

    pages = 20 * 3_000_000 // 4096
    assert faults("set") < pages // 10  # the freed pages stay in the heap and are reused
    assert faults("mmap-threshold-only") > pages // 2  # what the trim threshold prevents: each block faulted in anew
