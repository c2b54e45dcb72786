"""Along one erasure on the canvas model: what the erasure check finds, against what the
UnlearnCanvas protocol scores, every --every steps.

The erasure check behind `stop_when_erased` (unlearning/audit/stop.py) decides when a run may
end; this measures whether its verdict follows the protocol's own judges, which it never sees.
The run is erase()'s own preparation and loop (the model's lethe.json, any --set), run for
--steps steps without stopping. At step 0 and every --every steps it records the check's share
per concept, the forget loss, and UA, IRA and CRA of every style x digit pair drawn --per-pair
times with the stock pipeline call (as in canvas_table.py, with fewer images per pair).

    python benchmarks/canvas_trajectory.py dots --seed 2 --steps 240
    python benchmarks/canvas_trajectory.py dots red stripes --steps 400 --every 40   # the multi job
    python benchmarks/canvas_trajectory.py seven --method graddiff --every 10 --json seven.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from unlearning.api import erasure_check, make_training_data
from unlearning.callbacks import Callbacks
from unlearning.canvas.check import ALL_PAIRS
from unlearning.canvas.protocol import scores
from unlearning.canvas.sampling import accuracies, draw_pairs
from unlearning.fingerprint import model_fingerprint
from unlearning.job import prepare_job
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline
from unlearning.prompts import build_prompt_sets, model_vocabulary
from unlearning.train import Unlearner, evaluation_mode

sys.path.insert(0, str(Path(__file__).parent))
from canvas_table import parse_set  # noqa: E402


def prepared(model: Path, concepts: list[str], method: str, seed: int, hyperparameters: dict, work: Path):
    """erase()'s own preparation, up to its erasure check: (job, pipeline, training data, check or None).
    `hyperparameters` must set stop_when_erased for the check to exist."""
    job = prepare_job(model, concepts, work / "out", method, (), None, hyperparameters, seed, audit="off")
    pipe = load_pipeline(job.base)
    pipe.set_progress_bar_config(disable=True)
    sets = build_prompt_sets(job.concepts, job.config.num_prompts, seed, (), None,
                             model_vocabulary(job.model_settings), num_test=job.config.eval_prompts)
    data, _ = make_training_data(pipe, sets, job, model_fingerprint(job.base), work / "cache", Callbacks())
    return job, pipe, data, erasure_check(pipe, job, data, sets.forget, Callbacks())


def trajectory(model: Path, concepts: list[str], method: str, seed: int, hyperparameters: dict, every: int,
               per_pair: int, work: Path) -> list[dict]:
    job, pipe, data, check = prepared(model, concepts, method, seed, hyperparameters, work)
    config = job.config
    if check is None:
        raise SystemExit(f"the erasure check cannot see {concepts} in the original's images")
    trainer = Unlearner(pipe.unet, TrainingNoise(pipe.scheduler.config), config, data, seed, pipe.device)
    rows = []
    while True:
        started = time.perf_counter()
        found = check.leaks()
        seconds = time.perf_counter() - started
        with evaluation_mode(pipe.unet):
            protocol = scores(accuracies(draw_pairs(pipe, ALL_PAIRS, per_pair, seed)), concepts)
        loss = trainer.history[-1]["forget_loss"] if trainer.history else None
        rows.append({"step": trainer.step_index, "check": found, **protocol, "forget_loss": loss,
                     "check_seconds": seconds})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if trainer.step_index >= config.steps:
            return rows
        for _ in range(every):
            trainer.step()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("concepts", nargs="+", help="styles or digits of the canvas model, erased in one job")
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--method", default="rg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--every", type=int, default=20, help="steps between two measurements")
    parser.add_argument("--per-pair", type=int, default=2, help="images drawn per style x digit pair")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a hyperparameter")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    # The check needs stop_when_erased set to exist; the loop here never stops on it.
    hyperparameters = {"stop_when_erased": 0.0, **parse_set(args.set), "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="canvas-trajectory-") as work:
        rows = trajectory(args.model, args.concepts, args.method, args.seed, hyperparameters, args.every,
                          args.per_pair, Path(work))
    print("| step | check | UA | IRA | CRA | forget loss |\n|---|---|---|---|---|---|")
    for r in rows:
        loss = "—" if r["forget_loss"] is None else f"{r['forget_loss']:.3f}"
        check = ", ".join(f"{share:.2f}" for share in r["check"].values())
        cra = "—" if r["CRA"] is None else f"{r['CRA']:.2f}"
        print(f"| {r['step']} | {check} | {r['UA']:.2f} | {r['IRA']:.2f} | {cra} | {loss} |")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "command": "python benchmarks/canvas_trajectory.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "concepts": args.concepts, "method": args.method, "seed": args.seed, "per_pair": args.per_pair,
            "hyperparameters": hyperparameters, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
