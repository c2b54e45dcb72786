"""Content-addressed blob storage: one interface, a local folder or any S3-compatible store.

A blob is a file's bytes kept under its sha256, so a file shared by many versions is stored
once. Writes are all-or-nothing (a local temp file renamed into place; one S3 PUT), so a
blob is either absent or complete. Reads stream, optionally a byte range.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

CHUNK = 1 << 20


class Storage(Protocol):
    def put_file(self, path: Path) -> tuple[str, int]:
        """Store the file's bytes if absent; return (sha256, size)."""

    def has(self, sha256: str) -> bool: ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of a blob (end None: to its end), in chunks.

        The blob is opened at the call (a missing blob raises then, before any byte is
        sent); the bytes are read as the iterator is consumed.
        """

    def check(self) -> None:
        """Raise if the store does not answer (for /readyz)."""


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


class LocalStorage:
    """Blobs under `<root>/blobs/ab/abcdef...`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put_file(self, path: Path) -> tuple[str, int]:
        sha256, size = file_sha256(path)
        if not self.has(sha256):
            self._write(path, self.root / blob_key(sha256))
        return sha256, size

    def has(self, sha256: str) -> bool:
        return (self.root / blob_key(sha256)).is_file()

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        source = open(self.root / blob_key(sha256), "rb")
        source.seek(start)
        return _chunks(source, None if end is None else end - start)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise OSError(f"storage folder {self.root} is not writable")

    def _write(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Temp file in the same folder, then an atomic rename: never a half-written blob.
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out, open(source, "rb") as data:
                shutil.copyfileobj(data, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class S3Storage:
    """Blobs under `s3://<bucket>/<prefix>/blobs/ab/abcdef...` on any S3-compatible store."""

    def __init__(self, bucket: str, prefix: str, client):
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client

    def put_file(self, path: Path) -> tuple[str, int]:
        sha256, size = file_sha256(path)
        if not self.has(sha256):
            self.client.upload_file(str(path), self.bucket, self._key(sha256))
        return sha256, size

    def has(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if end is not None and end <= start:
            return iter(())
        byte_range = f"bytes={start}-" + ("" if end is None else str(end - 1))
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256), Range=byte_range)["Body"]
        return _chunks(body, None)

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}/{blob_key(sha256)}" if self.prefix else blob_key(sha256)


def _chunks(source, left: int | None) -> Iterator[bytes]:
    """Read an open file-like `source` in chunks (at most `left` bytes), then close it."""
    try:
        while left is None or left > 0:
            chunk = source.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            left = None if left is None else left - len(chunk)
            yield chunk
    finally:
        source.close()


def open_storage(settings) -> Storage:
    """The store named by `settings.storage_url`: `s3://bucket/prefix`, `file:///path` or a path."""
    url = settings.storage_url
    if url.startswith("s3://"):
        parsed = urlparse(url)
        return S3Storage(parsed.netloc, parsed.path, _s3_client(settings))
    if url.startswith("file://"):
        url = urlparse(url).path
    return LocalStorage(Path(url))


def _s3_client(settings):
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key.get_secret_value()
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=secret or None,
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}),
    )
