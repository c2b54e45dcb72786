"""A registered version as a local diffusers folder, for the library to read.

Versions are immutable, so a folder is materialised once per machine under the cache and
reused by every later job on the same version. The folder is named by the version's content
(its files' paths and sha256s), not by its model name and number: names and numbers are per
tenant, so two tenants' `sd15` v1 are different models. It is written to a temporary folder, each
file checked against its sha256, then renamed into place: a folder that exists is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from service.models import ModelVersion
from service.storage import Storage


class CorruptBlob(RuntimeError):
    pass


def version_folder(cache_dir: Path, version: ModelVersion) -> Path:
    listing = "\n".join(sorted(f"{file.path}\0{file.sha256}" for file in version.files))
    return Path(cache_dir) / "versions" / hashlib.sha256(listing.encode()).hexdigest()[:32]


def materialise(storage: Storage, version: ModelVersion, cache_dir: Path) -> Path:
    """The local folder of `version` (its files loaded from `storage` on first use)."""
    target = version_folder(cache_dir, version)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version.version}-"))
    try:
        for file in version.files:
            _fetch(storage, file.sha256, temp / file.path)
        os.rename(temp, target)
    except OSError:
        if not target.is_dir():  # not just another worker finishing first
            raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _fetch(storage: Storage, sha256: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in storage.read(sha256):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise CorruptBlob(f"blob {sha256} read back as {digest.hexdigest()}")
