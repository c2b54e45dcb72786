"""An SDXL erasure through the whole service: `lethe serve` (embedded: SQLite, the filesystem
broker, local storage, its own real worker), the tiny SDXL pipeline registered over HTTP, a job
posted and polled, the version downloaded and loaded by stock `StableDiffusionXLPipeline`."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest
import torch

from tests.workers.conftest import API_KEY, FAST_JOB, make_deployment
from tests.workers.test_worker_end_to_end import poll_job
from tests.workers.worker_harness import start_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdxl_base(tmp_path_factory):
    from unlearning.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "base", seed=0)


@pytest.fixture
def embedded_gateway(tmp_path, workers):
    deployment = make_deployment(tmp_path / "data", "", "filesystem://")
    server, url = start_http("serve", deployment.env(), tmp_path / "serve.log")
    workers.append(server)  # stopped, and its log shown on failure
    server.wait_for_output(" ready.")  # the worker that `serve` started
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        yield client


def test_an_sdxl_erasure_through_the_service_loads_in_stock_diffusers(embedded_gateway, sdxl_base, tmp_path):
    client = embedded_gateway
    registered = client.post("/v1/models", json={"name": "xl", "source": {"path": str(sdxl_base)}})
    assert registered.status_code == 201, registered.text
    assert registered.json()["family"] == "sdxl"
    created = client.post("/v1/jobs", json={"base_model": {"name": "xl"}, "concepts": ["cat"], "hyperparameters": FAST_JOB})
    assert created.status_code == 202, created.text

    job = poll_job(client, created.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    version = client.get("/v1/models/xl/versions/2").raise_for_status().json()
    assert (version["family"], version["trainable"], version["adapter"]) == ("sdxl", "unet", None)
    assert {"text_encoder_2/model.safetensors", "delta.safetensors"} <= {f["path"] for f in version["files"]}

    folder = tmp_path / "downloaded"
    with tarfile.open(fileobj=io.BytesIO(client.get("/v1/models/xl/versions/2/archive").raise_for_status().content)) as tar:
        tar.extractall(folder, filter="data")
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder / "xl-v2")
    image = pipe("a photo of a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)
