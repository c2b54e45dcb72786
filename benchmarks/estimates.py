"""How close the service's estimate of a job's duration comes to the job's actual time, on the
digits model (models/digits).

Each job runs `unlearning.erase` (the library, not a `lethe serve` worker: no base download and
no publishing to time) in a fresh Python process, as a worker runs each job in a fresh child
(torch and diffusers are imported first, outside the timing, as a worker's parent has them
loaded before it forks the child), with the worker's own reporting path: its progress goes through `workers.reporting.Reporter`
and `StageClock`, and once it has succeeded
`workers.throughput.record` stores what it measured in a migrated SQLite database, exactly as a
worker does. Before each job, `service.estimates.estimate` (what the gateway calls at submission)
estimates it from the records so far. The first SEEDING jobs only seed the records; every later
one is reported: estimate, actual (the wall time of the job's reporting and its erase call),
and their ratio. Each job has its own empty latents cache and its own seed (the
estimate assumes a cold cache). Each job also reports, per stage, the longest wait before a
progress call of that stage (`longest_silence_s`).

    python benchmarks/estimates.py --json benchmarks/estimates.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service import estimates  # noqa: E402  (no torch: the gateway's side)
from service.db import make_engine, migrate, session_factory  # noqa: E402

MODEL = ROOT / "models" / "digits"
SEEDING = 3
# (hyperparameters, audit): steps, prompts and the audit vary; the rest are the defaults.
JOBS = [
    ({"steps": 30, "num_prompts": 100}, "quick"),
    ({"steps": 60, "num_prompts": 200}, "off"),
    ({"steps": 50, "num_prompts": 150}, "quick"),
    ({"steps": 100, "num_prompts": 300}, "off"),
    ({"steps": 20, "num_prompts": 50}, "quick"),
    ({"steps": 80, "num_prompts": 100}, "off"),
    ({"steps": 40, "num_prompts": 250}, "quick"),
    ({"steps": 70, "num_prompts": 150}, "off"),
]


def base_files() -> list[SimpleNamespace]:
    """The digits folder's files as a registered version lists them (path, size)."""
    return [SimpleNamespace(path=p.relative_to(MODEL).as_posix(), size=p.stat().st_size)
            for p in MODEL.rglob("*") if p.is_file()]


class Silences:
    """The longest wait before a progress call, by the stage of the call."""

    def __init__(self):
        self.last, self.longest = time.perf_counter(), {}

    def __call__(self, stage: str, step: int, total: int) -> None:
        now = time.perf_counter()
        self.longest[stage] = round(max(self.longest.get(stage, 0.0), now - self.last), 2)
        self.last = now


def run_job(number: int, database_url: str, scratch: Path) -> dict:
    """One erasure in this (fresh) process, reported and recorded as a worker does it."""
    import unlearning
    from unlearning.pipeline import import_libraries
    from service.models import Job
    from workers import throughput
    from workers.reporting import Reporter
    from workers.stage_clock import StageClock

    import_libraries()  # as the worker's parent does, before the job's child exists
    started, silences = time.perf_counter(), Silences()
    hyperparameters, audit = JOBS[number]
    job = Job(id=f"job_bench_{number}", method="rg", hyperparameters=hyperparameters, audit=audit,
              concepts=["seven"], base_model="digits", base_version=1)
    reporter = Reporter(lambda *progress: None, lambda *event: None, clock=StageClock(None))

    def progress(stage: str, step: int, total: int) -> None:
        silences(stage, step, total)
        reporter.on_progress(stage, step, total)

    progress("preparing", 0, 1)  # as workers/job_run.py, before the base is materialised
    callbacks = unlearning.Callbacks(on_progress=progress, on_event=reporter.on_event)
    unlearning.erase(MODEL, job.concepts, scratch / f"out-{number}", hyperparameters=hyperparameters, seed=number,
                     cache_dir=scratch / f"cache-{number}", callbacks=callbacks, audit=audit)
    actual = time.perf_counter() - started
    reporter.on_progress("publishing", 0, 1)  # nothing to publish here: the stage takes no time
    reporter.on_progress("publishing", 1, 1)
    reporter.clock.stop()
    with session_factory(make_engine(database_url))() as session:
        throughput.record(session, job, SimpleNamespace(files=base_files()), reporter.clock.seconds,
                          reporter.latents_drawn, throughput.worker_kind())
    return {"actual_seconds": round(actual, 1), "worker_kind": throughput.worker_kind(),
            "actual_stages": {k: round(v, 1) for k, v in reporter.clock.seconds.items()},
            "longest_silence_s": silences.longest}


def estimate(sessions, number: int) -> dict[str, float] | None:
    import_libraries()  # as the worker's parent does, before the job's child exists
    started, silences = time.perf_counter(), Silences()
    hyperparameters, audit = JOBS[number]
    with sessions() as session:
        return estimates.estimate(session, "digits", 1, estimates.unet_parameters(base_files()),
                                  estimates.Work("rg", hyperparameters, audit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)  # run one job in this process (the child)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job is not None:
        print(json.dumps(run_job(args.job, args.database, args.scratch)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/lethe.db"
        migrate(url)
        sessions = session_factory(make_engine(url))
        for number, (hyperparameters, audit) in enumerate(JOBS):
            planned = estimate(sessions, number)
            child = subprocess.run([sys.executable, __file__, "--job", str(number), "--database", url,
                                    "--scratch", scratch], capture_output=True, text=True, check=True)
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            row = {"job": number, "hyperparameters": hyperparameters, "audit": audit, "seeds_records": number < SEEDING,
                   "estimated_seconds": None if planned is None else round(estimates.total(planned), 1),
                   "estimated_stages": {k: round(v, 1) for k, v in (planned or {}).items()}, **measured}
            if planned is not None and number >= SEEDING:
                row["ratio"] = round(estimates.total(planned) / measured["actual_seconds"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    reported = [r["ratio"] for r in rows if "ratio" in r]
    summary = {"model": "models/digits", "worker_kind": rows[0]["worker_kind"], "machine": platform.machine(),
               "jobs": rows, "ratios": reported,
               "within_0.5_1.5": all(0.5 <= r <= 1.5 for r in reported) and len(reported) >= 5,
               "longest_silence_s": max(max(r["longest_silence_s"].values()) for r in rows),
               "date": time.strftime("%Y-%m-%d")}
    print(json.dumps({k: v for k, v in summary.items() if k != "jobs"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
