"""What the audit's before-training check costs: does the base draw the concept?

`erase` asks it right after loading the pipeline (`unlearning.audit.run.check_before_training`):
the references and their made-up-word controls drawn and judged. When the concept is drawn, the
audit stage reuses them and draws its other probes; this times the check, and the rest of a quick
audit after it (`run_audit` on the untrained model, as a version that changed nothing), on
models/digits.

    python benchmarks/audit_check.py                    # seven (drawn) and eleven (not drawn)
    python benchmarks/audit_check.py --concepts three --repeats 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from unlearning.audit import SETTINGS
from unlearning.audit.run import Auditor, run_audit
from unlearning.callbacks import Callbacks
from unlearning.job import prepare_job
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, round(time.perf_counter() - started, 2)


def measure(model: Path, concept: str, repeats: int) -> dict:
    job = prepare_job(model, [concept], Path(tempfile.mkdtemp()) / "out", "rg", (), None, None, 0, False, "quick")
    pipe = load_pipeline(job.base, None, False)
    noise = TrainingNoise(pipe.scheduler.config)
    auditor = Auditor(pipe, noise, job, SETTINGS["quick"], nullcontext)
    checks = [timed(auditor.references_check) for _ in range(repeats)]
    row = {"concept": concept, "drawn": checks[0][0].check["drawn"], "check_seconds": [s for _, s in checks]}
    if row["drawn"]:  # the rest of a quick audit, which reuses the check's images and verdicts
        row["quick_audit_after_check_seconds"] = timed(
            lambda: run_audit(pipe, noise, job, {}, None, Callbacks(), checks[0][0]))[1]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--concepts", nargs="+", default=["seven", "eleven"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    for concept in args.concepts:
        print(json.dumps(measure(args.model, concept, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
