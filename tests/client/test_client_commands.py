"""The `lethe` client commands, run as a user runs them (subprocesses), against a real
`lethe serve` with a real worker erasing from a tiny real pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import httpx
import pytest

from .conftest import ADMIN_KEY, OTHER_KEY, lethe_executable

pytestmark = pytest.mark.slow

# Tiny settings so a job takes seconds on a CPU.
TINY = ["--steps", "2", "--seed", "0", "--set", "batch_size=2", "--set", "num_prompts=4",
        "--set", "generation_steps=2", "--set", "generation_batch_size=4", "--set", "save_every=1",
        "--set", "eval_prompts=1"]


def lethe(server, *args, key=ADMIN_KEY, url=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LETHE_URL": url or server.url, "LETHE_API_KEY": key}
    return subprocess.run([lethe_executable(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def ok(run: subprocess.CompletedProcess, server=None) -> subprocess.CompletedProcess:
    log = f"\n--- server log ---\n{server.log_tail()}" if server else ""
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:{run.stdout}\nstderr:{run.stderr}{log}"
    return run


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def erased(live_server):
    """`lethe erase tiny "van gogh" --wait`: the finished run and the job it made."""
    run = ok(lethe(live_server, "erase", "tiny", "van gogh", *TINY, "--wait"), live_server)
    job_id = re.search(r"(job_\S+) succeeded", run.stdout).group(1)
    return run, job_id


@pytest.fixture(scope="module")
def version_files(live_server, erased):
    answer = httpx.get(f"{live_server.url}/v1/models/tiny/versions/2",
                       headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["files"]


def test_models_lists_the_registered_model(live_server):
    run = ok(lethe(live_server, "models"))
    assert re.search(r"^tiny\s+1\s+private\b", run.stdout, re.M), run.stdout  # the admin's own tenant's model
    names = [m["name"] for m in json.loads(ok(lethe(live_server, "models", "--json")).stdout)]
    assert "tiny" in names


def test_erase_wait_shows_progress_and_ends_with_the_result(erased):
    run, job_id = erased
    assert f"{job_id} succeeded: tiny version 2 (erased: van gogh)" in run.stdout
    assert "lethe download tiny 2" in run.stdout
    assert re.search(r"^unlearning \d+/2(  ETA .+)?$", run.stderr, re.M), run.stderr  # progress, fed by events
    assert "Traceback" not in run.stderr


def test_status_and_jobs_show_the_finished_job(live_server, erased):
    _, job_id = erased
    status = ok(lethe(live_server, "status", job_id)).stdout
    assert re.search(r"^status:\s+succeeded$", status, re.M), status
    assert re.search(r"^base model:\s+tiny v1$", status, re.M), status
    assert re.search(r"^result:\s+tiny version 2$", status, re.M), status
    listing = ok(lethe(live_server, "jobs")).stdout
    assert re.search(rf"^{job_id}\s+succeeded\s+tiny v1\s+van gogh", listing, re.M), listing
    assert json.loads(ok(lethe(live_server, "status", job_id, "--json")).stdout)["id"] == job_id


def test_another_tenant_sees_no_such_job(live_server, erased):
    _, job_id = erased
    run = lethe(live_server, "status", job_id, key=OTHER_KEY)
    assert run.returncode == 2
    assert run.stderr.startswith("lethe: error 404")


def test_download_resumes_a_partial_file_with_range_and_checks_every_sha256(live_server, version_files, tmp_path):
    largest = max(version_files, key=lambda f: f["size"])
    whole = httpx.get(f"{live_server.url}/v1/models/tiny/versions/2/files/{largest['path']}",
                      headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60).content
    half = len(whole) // 2
    part = tmp_path / (largest["path"] + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(whole[:half])

    run = ok(lethe(live_server, "download", "tiny", "2", str(tmp_path)))

    assert re.search(rf"{re.escape(largest['path'])}\s.*resumed at byte {half}$", run.stdout, re.M), run.stdout
    assert "every sha256 checked" in run.stdout
    for entry in version_files:
        assert sha256(tmp_path / entry["path"]) == entry["sha256"], entry["path"]
    assert not list(tmp_path.rglob("*.part"))

    again = ok(lethe(live_server, "download", "tiny", "2", str(tmp_path))).stdout
    assert again.count("already present") == len(version_files)


def test_the_downloaded_version_loads_with_stock_diffusers(live_server, version_files, tmp_path):
    from diffusers import StableDiffusionPipeline

    ok(lethe(live_server, "download", "tiny", "2", str(tmp_path)))
    pipeline = StableDiffusionPipeline.from_pretrained(tmp_path)
    assert pipeline.unet is not None


def test_download_refuses_a_file_whose_sha256_does_not_match(live_server, version_files, tmp_path):
    largest = max(version_files, key=lambda f: f["size"])
    part = tmp_path / (largest["path"] + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"\0" * (largest["size"] // 2))  # a corrupted partial download

    run = lethe(live_server, "download", "tiny", "2", str(tmp_path))

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"sha256 mismatch: {largest['path']}" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / largest["path"]).exists() and not part.exists()
    ok(lethe(live_server, "download", "tiny", "2", str(tmp_path)))  # a second run repairs it
    assert sha256(tmp_path / largest["path"]) == largest["sha256"]


def test_download_refuses_a_file_damaged_in_storage(live_server, tmp_path):
    from unlearning.tiny import build_tiny_pipeline

    # Other weights than `tiny` (seed 1), so that the damaged blob is this model's alone.
    version = live_server.register("tiny-damaged", build_tiny_pipeline(tmp_path / "model", seed=1))
    unet = next(f for f in version["files"] if f["path"] == "unet/diffusion_pytorch_model.safetensors")
    blob = live_server.data_dir / "storage" / "blobs" / unet["sha256"][:2] / unet["sha256"]
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte, same size
    blob.write_bytes(bytes(damaged))

    run = lethe(live_server, "download", "tiny-damaged", "1", str(tmp_path / "out"))

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"sha256 mismatch: {unet['path']}: expected {unet['sha256']}" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / unet["path"]).exists()
    assert (tmp_path / "out" / "model_index.json").is_file()  # the sound files are all there


def test_a_field_error_is_shown_as_the_problem_detail(live_server):
    run = lethe(live_server, "erase", "tiny", "van gogh", "--steps", "0")
    assert run.returncode == 2
    assert run.stderr.startswith("lethe: error 422")
    assert "hyperparameters.steps" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unknown_model_is_shown_as_the_problem_detail(live_server):
    run = lethe(live_server, "erase", "no-such-model", "van gogh")
    assert run.returncode == 2
    assert re.match(r"lethe: error 4\d\d: .*no-such-model", run.stderr), run.stderr
    assert "Traceback" not in run.stderr


def test_a_wrong_key_is_refused_with_a_hint(live_server):
    run = lethe(live_server, "jobs", key="not-a-key")
    assert run.returncode == 2
    assert run.stderr.startswith("lethe: error 401") and "LETHE_API_KEY" in run.stderr


def test_an_unreachable_server_is_one_clear_line(live_server):
    from .conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    run = lethe(live_server, "models", url=url)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"lethe: cannot connect to the Lethe server at {url} (Connection refused); "
        "is it running, and is LETHE_URL right?")


def test_cancel_stops_a_long_job(live_server):
    long_job = ["--steps", "10000", *TINY[2:]]
    started = json.loads(ok(lethe(live_server, "erase", "tiny", "golf ball", *long_job, "--json")).stdout)
    assert started["status"] == "queued"

    run = ok(lethe(live_server, "cancel", started["id"]))
    assert re.match(rf"{started['id']} (cancelling|cancelled)$", run.stdout.strip()), run.stdout

    final = None
    for _ in range(300):
        final = json.loads(ok(lethe(live_server, "status", started["id"], "--json")).stdout)
        if final["status"] in ("cancelled", "failed", "succeeded"):
            break
        time.sleep(0.5)
    assert final["status"] == "cancelled", final
