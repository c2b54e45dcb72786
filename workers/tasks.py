"""The Celery task: thin, like a web view. It takes a job id and hands over to `JobRun`.

No torch at import time: the worker's parent imports this module; the library is imported
inside the task, in the fresh child process that runs it.
"""

from __future__ import annotations

from celery import Celery

from workers.job_run import JobRun
from workers.queue import RUN_JOB


def register_tasks(app: Celery, settings) -> None:
    @app.task(name=RUN_JOB, ignore_result=True)
    def run_job(job_id: str) -> str | None:
        return JobRun.open(settings, job_id).run()
