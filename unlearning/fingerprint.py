"""Content hashes: of files, and of a whole model folder (memoised by size and mtime)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHUNK = 1 << 20
# Lethe's records beside a model, and a LoRA erasure's adapter (its effect is already in the UNet).
NOT_MODEL = {"manifest.json", "delta.safetensors", "evaluation", "lethe.json", "lora"}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(model_dir: Path) -> list[Path]:
    """The files that make the model: everything but Lethe's own records."""
    return sorted(
        p for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).parts[0] not in NOT_MODEL
    )


def model_fingerprint(model_dir: str | Path, memo_file: Path | None = None) -> str:
    """sha256 over (relative path, file sha256) of every model file. Hashing a 4 GB model
    takes seconds, so file hashes are memoised in `memo_file` by (path, size, mtime)."""
    model_dir = Path(model_dir).resolve()
    memo = json.loads(memo_file.read_text()) if memo_file and memo_file.is_file() else {}
    digest = hashlib.sha256()
    for path in model_files(model_dir):
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = file_sha256(path)
        digest.update(f"{path.relative_to(model_dir).as_posix()}\0{memo[key]}\n".encode())
    if memo_file:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    return digest.hexdigest()
