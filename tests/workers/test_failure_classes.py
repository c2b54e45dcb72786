"""Failures that no retry can mend fail the job at once, with a code that says why
(workers/failures.py): a full disk (`no_space`), base weights that cannot be loaded
(`invalid_base_model`). Real `lethe worker` processes on PostgreSQL and Redis; the full disk
is a real, full tmpfs holding the versions' storage."""

from __future__ import annotations

import errno
import pickle
import shutil
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from service import jobs, registry
from service.api.present import job_public
from service.models import Blob
from service.storage import open_storage
from tests.workers.conftest import FAST_JOB, TENANT, make_deployment
from tests.workers.test_worker_jobs import wait_for_status
from workers.failures import permanent_failure
from workers.queue import enqueue

UNET = "unet/diffusion_pytorch_model.safetensors"
PICKLED_UNET = "unet/diffusion_pytorch_model.bin"


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs of our own (the test runs as root), unmounted after the test."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder) -> None:
    """Write until the file system holding `folder` has no byte left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        with pytest.raises(OSError) as full:
            while True:
                filler.write(b"\0" * (1 << 20))
    assert full.value.errno == errno.ENOSPC


def submit(deployment, base_model: str) -> str:
    spec = jobs.JobSpec(base_model=base_model, base_version=1, concepts=["cat"], method="rg", hyperparameters=FAST_JOB)
    with deployment.sessions() as session:
        job_id = jobs.create_job(session, TENANT, spec).id
    assert enqueue(deployment.celery, job_id)
    return job_id


def register(deployment, name: str, folder) -> None:
    with deployment.sessions() as session:
        registry.register_base(session, open_storage(deployment.settings), name, folder, owner=None, visibility="public")


def assert_failed_at_once(deployment, job, code: str) -> None:
    assert (job.status, job.attempt, job.error["code"]) == ("failed", 1, code), job.error
    messages = [event.message for event in deployment.events(job.id)]
    assert not any("retried" in m or "queued again" in m for m in messages), messages
    assert str(deployment.settings.data_dir.parent) not in job_public(job).error.message  # no server path shown


def register_as_before_the_folder_check(deployment, name: str, safe_base, pickled_unet) -> None:
    """`safe_base` registered as `name`, its UNet's file row then pointing at `pickled_unet` stored
    as a blob: a pickle-only base as a deployment may hold one from before registration checked weights."""
    register(deployment, name, safe_base)
    sha256, size = open_storage(deployment.settings).put_file(pickled_unet)
    with deployment.sessions() as session:
        session.merge(Blob(sha256=sha256, size=size, created_at=time.time()))
        row = next(f for f in registry.get_version(session, name, 1, TENANT).files if f.path == UNET)
        row.path, row.sha256, row.size = PICKLED_UNET, sha256, size
        session.commit()


def test_a_full_disk_at_publishing_fails_the_job_at_once_as_no_space(tmp_path, postgres_url, redis_url, tiny_base,
                                                                      small_disk, workers):
    (tmp_path / "data").mkdir()
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url, storage_url=str(small_disk))
    deployment.register_base(tiny_base)  # its blobs fit; then nothing more does
    fill(small_disk)
    workers.append(deployment.start_worker())
    job_id = deployment.submit(["cat"])

    job = wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=120)

    assert_failed_at_once(deployment, job, "no_space")
    assert "No space left on device" in job.error["message"]
    assert any(e.data and e.data.get("stage") == "publishing" for e in deployment.events(job_id))  # it got that far
    assert [v.version for v in deployment.versions()] == [1]
    deployment.close()


def test_base_weights_that_cannot_be_loaded_fail_the_job_at_once(tmp_path, postgres_url, redis_url, tiny_base, workers):
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url)
    pickled = shutil.copytree(tiny_base, tmp_path / "pickled")
    torch.save(load_file(pickled / UNET), pickled / PICKLED_UNET)
    (pickled / UNET).unlink()  # weights only as pickle: refused, they could run code
    with pytest.raises(registry.RegistryError, match="only as pickle files"):
        register(deployment, "pickled", pickled)  # registration refuses it now...
    register_as_before_the_folder_check(deployment, "pickled", tiny_base, pickled / PICKLED_UNET)  # ...older ones did not
    garbled = shutil.copytree(tiny_base, tmp_path / "garbled")
    (garbled / UNET).write_bytes(b"not a safetensors file" * 10)
    register(deployment, "garbled", garbled)
    workers.append(deployment.start_worker())

    for name in ("pickled", "garbled"):
        job = wait_for_status(deployment, submit(deployment, name), jobs.TERMINAL, timeout_s=120)
        assert_failed_at_once(deployment, job, "invalid_base_model")
    deployment.close()


# -- which failures are permanent -----------------------------------------------------------------


def raised_from(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as error:
            raise outer from error
    except BaseException as error:
        return error


@pytest.mark.parametrize(
    "error, code",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no_space"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "no_space"),
        (raised_from(OSError(errno.ENOSPC, "No space left on device"), RuntimeError("upload failed")), "no_space"),
        (RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                      "data/0: file write failed: No space left on device"), "no_space"),
        (pickle.UnpicklingError("invalid load key, 'x'."), "invalid_base_model"),
        (raised_from(pickle.UnpicklingError("invalid load key"), ValueError("loading unet")), "invalid_base_model"),
        (ConnectionError("the store does not answer"), None),
        (OSError(errno.ENOENT, "No such file or directory"), None),
        (TimeoutError("read timed out"), None),
        (RuntimeError("CUDA out of memory"), None),
    ],
)  # fmt: skip
def test_which_failures_no_retry_can_mend(error, code):
    failure = permanent_failure(error)
    assert (failure or {}).get("code") == code


def test_a_safetensors_reader_error_is_an_unloadable_base():
    from safetensors import SafetensorError

    assert permanent_failure(SafetensorError("Error while deserializing header"))["code"] == "invalid_base_model"
