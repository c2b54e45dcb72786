"""Registering a base model reads only a folder under the model roots, and only what lies in it.

Every tenant may download a public base (and its owner tenant a private one), so a folder that
led anywhere else (a symbolic link to /etc/passwd or /proc/self/environ, which holds
LETHE_API_KEYS) would hand the server's files to every tenant. The tests register public
models and download them as tenant-a, a tenant that is not the admin's.
"""

import os
import shutil
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.db import migrate
from tests.service.conftest import make_settings
from tests.service.service_helpers import ADMIN, KEY_A

VAE = "vae/diffusion_pytorch_model.safetensors"


@pytest.fixture
def roots(tmp_path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


def gateway(tmp_path, model_roots: str) -> TestClient:
    settings = make_settings(tmp_path / "data", model_roots=model_roots)
    migrate(settings.database_url)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path, roots):
    with gateway(tmp_path, str(roots)) as client:
        yield client


@pytest.fixture
def model(roots, tiny_pipeline) -> Path:
    """A copy of the tiny pipeline under the model root."""
    return Path(shutil.copytree(tiny_pipeline, roots / "sd"))


def register(client, path) -> dict:
    """The answer's body, with its HTTP status as `http_status`."""
    body = {"name": "sd", "source": {"path": str(path)}, "visibility": "public"}
    response = client.post("/v1/models", json=body, headers=ADMIN)
    return response.json() | {"http_status": response.status_code}


def assert_refused(client, path, *words) -> None:
    answer = register(client, path)
    assert answer["http_status"] == 422, answer
    assert [e["field"] for e in answer["errors"]] == ["source.path"]
    for word in words:
        assert word in answer["detail"], answer["detail"]
    assert client.get("/v1/models/sd/versions", headers=KEY_A).status_code == 404


def stored_blobs(client) -> list[Path]:
    storage = Path(client.app.state.parts.settings.storage_url)
    return [p for p in storage.rglob("*") if p.is_file()] if storage.exists() else []


def test_a_folder_under_a_root_registers(client, model):
    assert register(client, model)["http_status"] == 201
    served = client.get("/v1/models/sd/versions/1/files/model_index.json", headers=KEY_A)
    assert served.content == (model / "model_index.json").read_bytes()


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ"])
def test_a_link_to_a_server_file_is_refused_and_nothing_is_stored(client, model, target):
    (model / "leak.txt").symlink_to(target)
    assert_refused(client, model, "leak.txt", "outside the folder")
    assert stored_blobs(client) == []  # refused while listing, before any upload


def test_a_link_to_a_file_beside_the_folder_is_refused(client, model, roots):
    (roots / "secret.txt").write_text("not part of the model")
    (model / "tokenizer" / "extra.txt").symlink_to("../../secret.txt")
    assert_refused(client, model, "tokenizer/extra.txt", "outside the folder")


def test_a_link_to_a_file_inside_the_folder_is_read_as_that_file(client, model):
    # Decided: allowed. Its bytes are the target's, under the link's own path.
    (model / "unet" / "copy.safetensors").symlink_to("diffusion_pytorch_model.safetensors")
    (model / "index-again.json").symlink_to(model / "model_index.json")
    assert register(client, model)["http_status"] == 201
    for link, target in (("unet/copy.safetensors", "unet/diffusion_pytorch_model.safetensors"),
                         ("index-again.json", "model_index.json")):
        served = client.get(f"/v1/models/sd/versions/1/files/{link}", headers=KEY_A)
        assert served.status_code == 200 and served.content == (model / target).read_bytes()


def test_a_link_to_a_folder_is_refused(client, model):
    (model / "unet-again").symlink_to("unet", target_is_directory=True)
    assert_refused(client, model, "unet-again", "to a folder")


def test_a_link_that_leads_nowhere_is_refused(client, model):
    (model / "gone.json").symlink_to("missing.json")
    assert_refused(client, model, "gone.json", "leads nowhere")


def test_a_fifo_is_refused_without_being_opened(client, model):
    os.mkfifo(model / "unet" / "pipe")  # opening it to read would block until a writer came
    assert_refused(client, model, "unet/pipe", "a FIFO")
    assert stored_blobs(client) == []


def test_a_socket_is_refused(client, model):
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(model / "sock"))
        assert_refused(client, model, "sock", "a socket")


def test_a_model_index_that_links_outside_is_refused(client, model):
    (model / "model_index.json").unlink()
    (model / "model_index.json").symlink_to("/etc/passwd")
    assert_refused(client, model, "model_index.json", "outside the folder")


def test_a_path_outside_the_roots_is_refused(client, tiny_pipeline):
    assert_refused(client, tiny_pipeline, "not under a model root", "LETHE_MODEL_ROOTS")


def test_dot_dot_cannot_leave_the_roots(client, model, roots, tiny_pipeline):
    outside = shutil.copytree(tiny_pipeline, roots.parent / "outside")
    assert_refused(client, f"{model}/../../outside", "not under a model root")
    assert register(client, f"{model}/../sd")["http_status"] == 201  # `..` that stays inside is fine
    assert outside.is_dir()


def test_a_symlinked_folder_under_a_root_cannot_lead_out_of_it(client, roots, tiny_pipeline):
    (roots / "escape").symlink_to(tiny_pipeline, target_is_directory=True)
    assert_refused(client, roots / "escape", "not under a model root", "resolves to")


def test_a_root_that_is_itself_a_link_is_resolved(tmp_path, tiny_pipeline):
    real = tmp_path / "real-models"
    shutil.copytree(tiny_pipeline, real / "sd")
    (tmp_path / "models-link").symlink_to(real, target_is_directory=True)
    with gateway(tmp_path, str(tmp_path / "models-link")) as client:
        assert register(client, tmp_path / "models-link" / "sd")["http_status"] == 201


@pytest.mark.parametrize("path", ["sd", "./sd", "models/sd"])
def test_a_relative_path_is_refused(client, model, path):
    assert_refused(client, path, "absolute")


def test_without_model_roots_registration_by_path_is_refused(tmp_path, tiny_pipeline):
    with gateway(tmp_path, "") as client:
        assert_refused(client, tiny_pipeline, "LETHE_MODEL_ROOTS", "off")


def test_several_roots(tmp_path, roots, model, tiny_pipeline):
    other = tmp_path / "other-models"
    shutil.copytree(tiny_pipeline, other / "sd2")
    with gateway(tmp_path, f"{roots}, {other}") as client:
        assert register(client, model)["http_status"] == 201
        answer = client.post("/v1/models", json={"name": "sd2", "source": {"path": str(other / "sd2")}}, headers=ADMIN)
        assert answer.status_code == 201, answer.text


class SwapsBeforeFirstPut:
    """The real storage; before the first file is stored, `swap()` changes the folder (a race)."""

    def __init__(self, storage, swap):
        self.storage, self.swap = storage, swap

    def put_file(self, path):
        if self.swap is not None:
            self.swap, swap = None, self.swap
            swap()
        return self.storage.put_file(path)


def swap_vae_for_a_link(model: Path) -> None:
    (model / VAE).unlink()
    (model / VAE).symlink_to("/etc/passwd")


def swap_vae_folder_for_a_link(model: Path) -> None:
    outside = model.parent.parent / "elsewhere"
    (model / "vae").rename(outside)
    (model / "vae").symlink_to(outside, target_is_directory=True)


def swap_vae_for_a_fifo(model: Path) -> None:
    (model / VAE).unlink()
    os.mkfifo(model / VAE)


@pytest.mark.parametrize("swap", [swap_vae_for_a_link, swap_vae_folder_for_a_link, swap_vae_for_a_fifo])
def test_a_file_swapped_after_the_listing_is_refused_not_followed(client, model, swap):
    parts = client.app.state.parts
    parts.storage = SwapsBeforeFirstPut(parts.storage, lambda: swap(model))
    assert_refused(client, model, "vae/")
