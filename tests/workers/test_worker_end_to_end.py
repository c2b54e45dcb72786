"""End to end through the real gateway process: POST a job, poll it, download the version,
load it with stock diffusers and generate; the delta on the parent gives the new UNet.

Distributed: `lethe gateway` + `lethe worker` on PostgreSQL and Redis.
Embedded: `lethe serve` alone (SQLite, the filesystem broker, local storage).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import httpx
import pytest
import torch
from safetensors.torch import load, load_file

from tests.workers.conftest import API_KEY, FAST_JOB, make_deployment
from tests.workers.worker_harness import start_http, start_worker

pytestmark = pytest.mark.slow
UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def gateway(request, tmp_path, workers):
    """The base URL of a running Lethe, distributed or embedded."""
    if request.param == "distributed":
        deployment = make_deployment(tmp_path / "data", request.getfixturevalue("postgres_url"),
                                     request.getfixturevalue("redis_url"))
        workers.append(start_worker(deployment.env(), tmp_path / "worker.log"))
        server, url = start_http("gateway", deployment.env(), tmp_path / "gateway.log")
    else:
        deployment = make_deployment(tmp_path / "data", "", "filesystem://")
        server, url = start_http("serve", deployment.env(), tmp_path / "serve.log")
        server.wait_for_output(" ready.")  # the worker that `serve` started
    workers.append(server)  # stopped, and its log shown on failure, like the workers
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        yield client


def poll_job(client: httpx.Client, job_id: str, timeout_s: float = 180.0) -> dict:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("gateway", ["distributed", "embedded"], indirect=True)
def test_post_a_job_download_the_version_and_generate_with_stock_diffusers(gateway, tiny_base, tmp_path):
    client = gateway
    registered = client.post("/v1/models", json={"name": "tiny", "source": {"path": str(tiny_base)}})
    assert registered.status_code == 201, registered.text
    created = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"],
                                            "hyperparameters": FAST_JOB})
    assert created.status_code == 202, created.text

    job = poll_job(client, created.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    assert job["result"] == {"model": "tiny", "version": 2}
    version = client.get("/v1/models/tiny/versions/2").raise_for_status().json()
    assert (version["parent"], version["job_id"], version["concepts_erased"]) == (1, job["id"], ["cat"])
    # A random tiny model draws no cat: the audit (the default, quick) warns before training and
    # says so in the version's evaluation, and the job succeeds all the same.
    audit = version["evaluation"]["audit"]
    assert (job["audit"], audit["mode"], audit["status"]) == (None, "quick", "not_applicable")
    events = client.get(f"/v1/jobs/{job['id']}/events").raise_for_status().json()["data"]
    warnings = [(i, e["message"]) for i, e in enumerate(events) if e["level"] == "warning"]
    assert [message for _, message in warnings] == [audit["warning"]]
    assert "does not seem to draw 'cat'" in audit["warning"]
    first_step = next(i for i, e in enumerate(events) if e["type"] == "progress" and e["data"]["stage"] == "unlearning")
    assert warnings[0][0] < first_step

    # The whole version as one archive: every file matches the manifest, stock diffusers loads it.
    folder = tmp_path / "downloaded"
    archive = client.get("/v1/models/tiny/versions/2/archive").raise_for_status().content
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    root = next(p.parent for p in folder.rglob("model_index.json"))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["files"] and manifest["job_id"] == job["id"] and manifest["version"] == 2
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        assert (len(data), sha256(data)) == (entry["size"], entry["sha256"]), entry["path"]
    # ...and each file downloaded on its own matches the version's file list.
    for entry in version["files"]:
        data = client.get(f"/v1/models/tiny/versions/2/files/{entry['path']}").raise_for_status().content
        assert sha256(data) == entry["sha256"], entry["path"]

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(root, safety_checker=None, requires_safety_checker=False)
    image = pipe("a photo of a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)

    # The delta applied to the parent's UNet gives the new UNet, tensor for tensor, exactly.
    delta = load(client.get("/v1/models/tiny/versions/2/delta").raise_for_status().content)
    parent = load(client.get(f"/v1/models/tiny/versions/1/files/{UNET}").raise_for_status().content)
    new_unet = load_file(root / UNET)
    assert delta and set(delta) <= set(parent)
    rebuilt = parent | delta
    assert set(rebuilt) == set(new_unet)
    assert all(torch.equal(rebuilt[name], new_unet[name]) for name in new_unet)
    assert any(not torch.equal(parent[name], new_unet[name]) for name in delta)

    # The worker kept what the job measured: a job like it (with no audit: this one's never ran,
    # its concept not drawn) is estimated at submission; the first had nothing to go by.
    again = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["dog"],
                                          "hyperparameters": FAST_JOB, "audit": "off"}).raise_for_status().json()
    assert job["estimated_seconds"] is None and again["estimated_seconds"] > 0
    client.post(f"/v1/jobs/{again['id']}/cancel").raise_for_status()
    poll_job(client, again["id"])
