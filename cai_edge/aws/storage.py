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


def list_uris(prefix: str, suffix: str = "") -> list[str]:
    """Every object under ``prefix`` ending in ``suffix``, sorted."""
    if is_s3(prefix):
        bucket, key_prefix = split_s3(prefix)
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
