"""Constants and helpers shared by the service tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from service.db import migrate
from service.settings import Settings

KEY_A = {"Authorization": "Bearer key-a"}
KEY_B = {"Authorization": "Bearer key-b"}
ADMIN = {"Authorization": "Bearer key-admin"}
UNET = "unet/diffusion_pytorch_model.safetensors"


def start_gateway(settings: Settings, tiny_pipeline: Path, broker=None):
    """A TestClient on a migrated database, with the tiny pipeline registered as `tiny` v1.

    `tiny` is public: the admin key is the operator's tenant (`ops`), and the tests run jobs
    on it as tenant-a and tenant-b.
    """
    from fastapi.testclient import TestClient

    from service.app import create_app

    migrate(settings.database_url)
    client = TestClient(create_app(settings, broker=broker), raise_server_exceptions=False)
    body = {"name": "tiny", "source": {"path": str(tiny_pipeline)}, "visibility": "public"}
    response = client.post("/v1/models", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return client


def broker_messages(settings: Settings) -> int:
    """Messages waiting in the embedded (filesystem) broker."""
    from workers.app import filesystem_broker_folder

    folder = filesystem_broker_folder(settings.data_dir)
    return len([p for p in folder.iterdir() if p.is_file()]) if folder.exists() else 0


def out_folder(tiny_pipeline: Path, target: Path, unet_bytes: bytes = b"changed unet") -> Path:
    """An out folder as `unlearning.erase` lays it out: a full pipeline, a changed UNet, delta, manifest, metrics."""
    shutil.copytree(tiny_pipeline, target)
    (target / UNET).write_bytes(unet_bytes)
    (target / "delta.safetensors").write_bytes(b"delta " + unet_bytes)
    (target / "evaluation").mkdir()
    (target / "evaluation" / "metrics.json").write_text(json.dumps({"forget_clip": 0.1}))
    (target / "manifest.json").write_text(json.dumps({"name": "tiny", "version": 99, "files": []}))
    return target
