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

