"""The Celery app's rules for hour-long GPU jobs, and no torch where the gateway or the
worker's parent process import the worker side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.settings import Settings
from workers.app import make_celery
from workers.queue import GPU_QUEUE


def test_the_celery_app_follows_the_rules_for_long_gpu_jobs(tmp_path):
    app = make_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))

    assert app.conf.task_acks_late is False  # acked at start: nothing waits on a visibility timeout
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.worker_disable_prefetch is True
    assert app.conf.worker_concurrency == 1 and app.conf.worker_max_tasks_per_child == 1
    assert app.conf.task_default_queue == GPU_QUEUE == "gpu"
    assert app.conf.task_ignore_result is True and not app.conf.result_backend
    assert app.conf.task_always_eager is False


def test_the_embedded_broker_is_a_folder_under_the_data_dir(tmp_path):
    app = make_celery(Settings(data_dir=tmp_path, broker_url="filesystem://"))

    options = app.conf.broker_transport_options
    assert app.conf.broker_url.startswith("filesystem://")
    assert Path(options["data_folder_in"]) == Path(options["data_folder_out"]) == tmp_path / "broker" / "messages"
    assert Path(options["data_folder_in"]).is_dir()


def test_neither_the_gateway_side_nor_the_worker_modules_import_torch():
    code = ("import sys, workers.app, workers.queue, workers.worker, workers.tasks, service.cli, service.cli.server; "
            "loaded = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_import_libraries_loads_what_a_job_imports_lazily():
    code = ("import sys; from unlearning.pipeline import import_libraries; import_libraries(); "
            "missing = {'torch', 'diffusers', 'unlearning.api', 'diffusers.pipelines.stable_diffusion_xl'} - set(sys.modules); "
            "assert not missing, missing")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
