"""Content-addressed blob storage: one interface, a local folder or any S3-compatible store.

A blob is a file's bytes kept under its sha256, so a file shared by many versions is stored
once. Writes are all-or-nothing (a local temp file renamed into place; one S3 upload), so a
blob is either absent or complete. Reads stream, optionally a byte range.

Beside the blobs, a small namespace of mutable objects under plain keys (such as
`jobs/<job id>/state.pt`, a job's resumable state, which any worker may pick up). An object
is replaced whole and read whole, each all-or-nothing too: a reader sees the old object or
the new one, never a mix. Keys are checked (no `..`, no absolute path, nothing under
`blobs/`), so an object never lands outside its namespace.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
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

    def put_object(self, key: str, path: Path) -> None:
        """Store the file as the object `key`, replacing the one there (all or nothing)."""

    def get_object(self, key: str, dest: Path) -> bool:
        """Write the object `key` to `dest` (all or nothing); False (and `dest` untouched) if there is none."""

    def delete_object(self, key: str) -> None:
        """Remove the object `key`; nothing happens if there is none."""


OBJECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
MAX_OBJECT_KEY = 512


def object_key(key: str) -> str:
    """`key` if it names a mutable object: `/`-separated names, each starting with a letter or digit."""
    if len(key) > MAX_OBJECT_KEY or not OBJECT_KEY.fullmatch(key) or key.split("/")[0] == "blobs":
        raise ValueError(f"object key {key!r} must be names of [A-Za-z0-9._-] joined by '/', each starting "
                         f"with a letter or digit, at most {MAX_OBJECT_KEY} characters, not under 'blobs/'")
    return key


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
    """Blobs under `<root>/blobs/ab/abcdef...`, objects under `<root>/<key>`."""

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

    def put_object(self, key: str, path: Path) -> None:
        self._write(path, self.root / object_key(key))

    def get_object(self, key: str, dest: Path) -> bool:
        try:
            # A put meanwhile renames a new file over it; this open file stays the old one.
            source = open(self.root / object_key(key), "rb")
        except FileNotFoundError:
            return False
        with source:
            _replace_atomically(Path(dest), lambda temp: _copy(source, temp))
        return True

    def delete_object(self, key: str) -> None:
        path = self.root / object_key(key)
        path.unlink(missing_ok=True)
        for folder in path.parents:  # the key's folders left empty (`jobs/<id>/`), up to the root
            if folder == self.root:
                return
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                return

    def _write(self, source: Path, target: Path) -> None:
        def copy_and_sync(temp: Path) -> None:
            with open(source, "rb") as data:
                _copy(data, temp, sync=True)

        _replace_atomically(target, copy_and_sync)


class S3Storage:
    """Blobs under `s3://<bucket>/<prefix>/blobs/ab/abcdef...`, objects under `<prefix>/<key>`, on any
    S3-compatible store."""

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
            if _is_missing(error):
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

    def put_object(self, key: str, path: Path) -> None:
        # upload_file: one PUT, or a multipart upload above 8 MiB (a state may exceed one PUT's
        # 5 GiB); either way the object appears only once complete, replacing the old one whole.
        self.client.upload_file(str(path), self.bucket, self._prefixed(object_key(key)))

    def get_object(self, key: str, dest: Path) -> bool:
        from botocore.exceptions import ClientError

        name = self._prefixed(object_key(key))
        try:
            _replace_atomically(Path(dest), lambda temp: self.client.download_file(self.bucket, name, str(temp)))
        except ClientError as error:
            if _is_missing(error):
                return False
            raise
        return True

    def delete_object(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._prefixed(object_key(key)))  # absent: no error

    def _key(self, sha256: str) -> str:
        return self._prefixed(blob_key(sha256))

    def _prefixed(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key


def _is_missing(error) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _replace_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """`fill(temp)` writes a temporary file beside `target`, which one rename then puts in its place.

    `target` is never half-written: it keeps its old content (or stays absent) until the rename.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    os.close(handle)
    try:
        fill(Path(temp))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _copy(source, target: Path, sync: bool = False) -> None:
    """Copy the open file `source` into the file `target` (flushed to disk with `sync`)."""
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)
        if sync:
            out.flush()
            os.fsync(out.fileno())


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
