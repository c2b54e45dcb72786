"""Versions of the libraries a result was made with, for its manifest."""

from __future__ import annotations

from importlib import metadata


def library_versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {name: version(name) for name in ("lethe", "torch", "diffusers", "transformers", "safetensors")}
