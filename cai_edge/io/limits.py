"""Size limits on untrusted input, checked against what a file *declares* before anything is allocated.

A few bytes can declare gigabytes (an NPZ header, a deflated zip member, a FITS ``NAXISn``), so
every reader compares the declared size with the bytes really present and with these bounds
first. CAI partitions are 25–100 MB; the largest AstroMAE bundle (fp32) is 63 MB.
"""

from __future__ import annotations

import os

MB = 1 << 20


def _limit_mb(name: str, default_mb: int) -> int:
    value = os.environ.get(name, "")
    return int(value) * MB if value.isdigit() and int(value) > 0 else default_mb * MB


# One partition's decoded arrays (NPZ members, a FITS IMAGES cube). Raise with CAI_EDGE_MAX_PARTITION_MB.
MAX_PARTITION_BYTES = _limit_mb("CAI_EDGE_MAX_PARTITION_MB", 768)
# One file inside a bundle (model.onnx). Raise with CAI_EDGE_MAX_BUNDLE_MB.
MAX_BUNDLE_FILE_BYTES = _limit_mb("CAI_EDGE_MAX_BUNDLE_MB", 512)
MAX_MANIFEST_BYTES = 4 * MB

# Real data (float images, ONNX weights, tensors) compresses a few times at most; a large member
# that inflates more than this is a decompression bomb (or blank data of no use).
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECK_FROM_BYTES = 64 * MB


def read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``'s position, fewer only at end of file: never more, whatever
    the file claims, and in one piece (one allocation) in the usual case of one full read."""
    parts = []
    while limit > 0:
        part = os.read(fd, limit)
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def zip_bomb_reason(info) -> str | None:
    """Why a zip member (``zipfile.ZipInfo``) must not be inflated, or None."""
    if info.file_size > _RATIO_CHECK_FROM_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        return (f"{info.filename} inflates {info.compress_size:,} bytes to {info.file_size:,} "
                f"(over {MAX_COMPRESSION_RATIO}:1): a decompression bomb")
    return None
