"""Object access for ``s3://bucket/key`` URIs (boto3, standard SDK configuration) and local paths.

boto3 reads credentials from its usual chain and honours ``AWS_ENDPOINT_URL`` for S3-compatible
endpoints (MinIO, moto, Ceph). Local paths let the same code run against a directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cai_edge.errors import CaiEdgeError


class StorageError(CaiEdgeError):
    """An object could not be read or written."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    if not is_s3(uri):
        raise StorageError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"no bucket in {uri!r}")
    return bucket, key


@lru_cache(maxsize=1)
def _client():
    import boto3

    return boto3.client("s3")


def _local(uri: str) -> Path:
    return Path(uri[7:] if uri.startswith("file://") else uri)


def get_bytes(uri: str) -> bytes:
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return _local(uri).read_bytes()
    except Exception as exc:
        raise StorageError(f"cannot read {uri}: {type(exc).__name__}: {exc}") from exc


def put_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            _client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
            return
        path = _local(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic, like an S3 PUT
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot write {uri}: {type(exc).__name__}: {exc}") from exc


def exists(uri: str) -> bool:
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            _client().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check {uri}: {exc}") from exc
    return _local(uri).exists()


LOCAL_PATHS_ENV = "CAI_EDGE_ALLOW_LOCAL_PATHS"


def local_paths_allowed() -> bool:
    """Local paths in events only where the local fan-out turned them on; a Lambda reads and writes S3 alone."""
    return os.environ.get(LOCAL_PATHS_ENV) == "1"


def check_uri(uri: object, what: str) -> str:
    """``uri`` if it may be used here: an ``s3://`` URI, or a local path when :func:`local_paths_allowed`."""
    if not isinstance(uri, str) or not uri:
        raise StorageError(f"{what} must be an s3:// URI, got {uri!r:.100}")
    if is_s3(uri):
        split_s3(uri)
        return uri
    if not local_paths_allowed():
        raise StorageError(f"{what} must be an s3:// URI, got {uri!r:.200}; local paths are only for `cai-edge fanout --local`")
    return uri


def folder(prefix: str) -> str:
    """A prefix read as a folder: ``s3://b/res/run1`` → ``s3://b/res/run1/`` (so ``run10/`` is not inside it)."""
    return prefix if not is_s3(prefix) or prefix.endswith("/") else prefix + "/"


def relative_name(uri: str, prefix: str | None) -> str:
    """``uri``'s key under ``prefix`` (``run-a/p-0002.npz``), or its base name when it is not under it."""
    if prefix:
        base = folder(prefix) if is_s3(prefix) else str(_local(prefix)).rstrip("/") + "/"
        path = uri if is_s3(uri) else str(_local(uri))
        if path.startswith(base) and len(path) > len(base):
            return path[len(base) :]
    return basename(uri)


def list_uris(prefix: str, suffix: str = "") -> list[str]:
    """Every object under the folder ``prefix`` ending in ``suffix``, sorted."""
    if is_s3(prefix):
        bucket, key_prefix = split_s3(folder(prefix))
        uris = []
        for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
            uris += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
        return sorted(uris)
    root = _local(prefix)
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


def join(prefix: str, name: str) -> str:
    if is_s3(prefix):
        return prefix + name if prefix.endswith("/") else f"{prefix}/{name}"
    return str(_local(prefix) / name)


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]
