"""Download the files of a model version into a folder, resuming and verifying.

What is fetched (`PARTS`): every file, which `from_pretrained` loads as a folder; only a LoRA
erasure's adapter (the files under the folder the version's `adapter` names: `lora/`); or
only the delta against the parent and the manifest. Each file is written to `<name>.part` first. An existing `.part` is resumed with
`Range: bytes=<size>-` and `If-Range: "<sha256>"` (the server's strong ETag), so a file
that changed on the server is sent whole instead of being spliced. A finished file is
renamed into place only when its sha256 matches the version's file list; a mismatch
removes the part and is reported, and the command exits non-zero.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import quote

from tqdm import tqdm

from .api import Api, ApiError, ClientError

CHUNK = 1 << 20
PARTS = ("all", "adapter", "delta")
DELTA_FILES = ("delta.safetensors", "manifest.json")


class NotInVersion(ClientError):
    """The version has no such part (no adapter, no delta): the caller's mistake."""

    exit_code = 2


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Outcome:
    entry: FileEntry
    state: str  # "downloaded" | "resumed" | "present" | "mismatch"
    resumed_at: int = 0
    actual_sha256: str = ""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def target_in(directory: Path, relative: str) -> Path:
    """The local path of a listed file; refuses names that would leave the folder."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ClientError(f"the server listed an unsafe file path: {relative!r}")
    return directory.joinpath(*parts)


def chosen_files(version: dict, part: str) -> list[FileEntry]:
    """The files of `version` (the server's version object) that make `part` (one of PARTS)."""
    entries = [FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in version.get("files") or []]
    shown = f"version {version.get('version')} of {version.get('name')!r}"
    if part == "adapter":
        adapter = version.get("adapter")
        if not isinstance(adapter, dict) or not adapter.get("diffusers"):
            raise NotInVersion(f"{shown} has no LoRA adapter (only a job with trainable lora makes one)")
        folder = PurePosixPath(adapter["diffusers"]).parent
        return [e for e in entries if PurePosixPath(e.path).parent == folder]
    if part == "delta":
        if not any(e.path == DELTA_FILES[0] for e in entries):
            raise NotInVersion(f"{shown} has no delta (it has no parent)")
        return [e for e in entries if e.path in DELTA_FILES]
    return entries


class VersionDownload:
    def __init__(self, api: Api, model: str, version: int, directory: Path,
                 report: Callable[[Outcome], None] = lambda outcome: None, part: str = "all"):
        self.api = api
        self.base = f"/v1/models/{quote(model, safe='')}/versions/{version}"
        self.directory = directory
        self.report = report
        self.part = part

    def files(self) -> list[FileEntry]:
        return chosen_files(self.api.get(self.base), self.part)

    def run(self) -> list[Outcome]:
        entries = self.files()
        outcomes = []
        with tqdm(total=sum(e.size for e in entries), unit="B", unit_scale=True, desc="download",
                  mininterval=0.2, leave=False, disable=not sys.stderr.isatty()) as bar:
            for entry in entries:
                outcome = self.fetch(entry, bar)
                self.report(outcome)
                outcomes.append(outcome)
        return outcomes

    def fetch(self, entry: FileEntry, bar: tqdm) -> Outcome:
        target = target_in(self.directory, entry.path)
        if target.is_file() and target.stat().st_size == entry.size and sha256_of(target) == entry.sha256:
            bar.update(entry.size)
            return Outcome(entry, "present")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        offset = part.stat().st_size if part.is_file() else 0
        if offset > entry.size:
            part.unlink()
            offset = 0
        resumed_at = self._transfer(entry, part, offset, bar)
        actual = sha256_of(part)
        if actual != entry.sha256:
            part.unlink()
            return Outcome(entry, "mismatch", resumed_at, actual)
        part.replace(target)
        return Outcome(entry, "resumed" if resumed_at else "downloaded", resumed_at)

    def _transfer(self, entry: FileEntry, part: Path, offset: int, bar: tqdm) -> int:
        """Write the file into `part`; return the byte it resumed at (0: from the start)."""
        if offset == entry.size:
            bar.update(offset)
            return offset  # already whole: only the checksum is left to do
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{entry.sha256}"'} if offset else {}
        try:
            with self.api.stream(f"{self.base}/files/{quote(entry.path)}", headers=headers) as response:
                resumed = response.status_code == 206
                bar.update(offset if resumed else 0)
                with part.open("ab" if resumed else "wb") as f:
                    for chunk in response.iter_bytes(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                return offset if resumed else 0
        except ApiError as exc:
            if exc.status != 416 or not offset:
                raise
            part.unlink()  # the part no longer fits the file: start over
            return self._transfer(entry, part, 0, bar)
