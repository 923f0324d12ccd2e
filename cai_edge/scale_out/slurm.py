"""Slurm array jobs: which shard an array task is, from the variables Slurm sets.

``--shard I/N`` counts from 0. ``--shard slurm`` derives it from ``SLURM_ARRAY_TASK_ID`` with
``SLURM_ARRAY_TASK_MIN``, ``_MAX``, ``_COUNT`` and ``_STEP``, so ``--array=1-N``, ``--array=0-(N-1)``
and stepped ranges (``--array=0-30:10``) all cover every shard once; ``--shard auto`` does the
same inside an array job and reads everything outside one.
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping

_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_COUNT")
_FORMS = ("I/N counts from 0: task 1 of 2 is 0/2 and task 2 of 2 is 1/2. In a Slurm array job give --shard slurm, "
          "which works with --array=1-N, --array=0-(N-1) and stepped ranges")


def slurm_shard(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(I, N)`` of this Slurm array task; ``argparse.ArgumentTypeError`` when not in a plain range array.

    Parameters
    ----------
    env : mapping, optional
        The environment (default: ``os.environ``).

    Returns
    -------
    tuple of int
        The 0-based shard index and the shard count (the array's task count).
    """
    env = os.environ if env is None else env
    missing = [v for v in _VARIABLES if v not in env]
    if missing:
        raise argparse.ArgumentTypeError(f"--shard slurm: {', '.join(missing)} not set; this is not a Slurm array task "
                                         "(submit with sbatch --array=1-N, or give --shard I/N)")
    try:
        task, low, high, count = (int(env[v]) for v in _VARIABLES)
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard slurm: {', '.join(f'{v}={env[v]!r}' for v in _VARIABLES)} are not numbers") from None
    index, off_step = divmod(task - low, step) if step > 0 else (-1, 0)
    if off_step or not 0 <= index < count or low + (count - 1) * step != high:
        raise argparse.ArgumentTypeError(
            f"--shard slurm: array task {task} of min {low}, max {high}, step {step}, count {count} is not a plain range; "
            "submit with --array=A-B or --array=A-B:S (not a list), or give --shard I/N")
    return index, count


def parse_shard(text: str) -> tuple[int, int] | None:
    """argparse type for ``--shard``: ``I/N`` (0 ≤ I < N), ``slurm``, or ``auto`` (Slurm's when in an array job, else None).

    Parameters
    ----------
    text : str
        What was given.

    Returns
    -------
    tuple of int or None
        ``(I, N)``, or None for ``auto`` outside an array job (read every input).
    """
    if text == "slurm":
        return slurm_shard()
    if text == "auto":
        return slurm_shard() if "SLURM_ARRAY_TASK_ID" in os.environ else None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N (e.g. 0/4), slurm or auto; got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 ≤ I < N. {_FORMS}")
    return index, count
