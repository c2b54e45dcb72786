"""A version as one tar stream, written as it is read: no file is ever held whole in memory.

The tar format is 512-byte blocks: per file a header block, the bytes, zero padding to a
block boundary; two zero blocks end the archive.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator

from service.storage import Storage

BLOCK = 512


def tar_stream(storage: Storage, files: Iterable[tuple[str, str, int]], root: str, mtime: int) -> Iterator[bytes]:
    """The tar of `files` ((path, sha256, size) each) under the folder `root`."""
    for path, sha256, size in files:
        info = tarfile.TarInfo(f"{root}/{path}")
        info.size, info.mtime, info.mode = size, mtime, 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield from storage.read(sha256)
        if size % BLOCK:
            yield b"\0" * (BLOCK - size % BLOCK)
    yield b"\0" * (2 * BLOCK)
