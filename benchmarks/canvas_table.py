"""The UnlearnCanvas protocol on the canvas model (models/canvas): erase styles and digits.

Jobs, each run with every method (and rg in its robust mode) and seed (`unlearning.erase`, the
method's defaults overridden only by the model's lethe.json and any --set; no audit):

- style: erase one style (each of --styles);
- digit: erase one digit (each of --digits);
- multi: erase the --styles at once, in one job;
- sequence: erase the --styles one after another, each on the previous version (scored as multi);
- chain: erase the first style, then the first digit on the resulting version.

After each job every style x digit pair is drawn (--per-pair images, the stock pipeline call,
the job's seed) and judged by the two judges; UA, IRA and CRA are defined in
`unlearning/canvas/protocol.py`; each job's row in the JSON also holds both judges' accuracy over
the pairs of each class (`per_class`). The original row scores the original model's images as if
the same classes were erased. Time: wall seconds of the job's erase() calls. With --attack, a
job that erased one class is also attacked with the audit's soft prompt, at two strengths, and
the judges say how often the learned prompt draws the class again (`canvas_attack.py`).

    python benchmarks/canvas_table.py                    # 3 styles, 3 digits, multi, chain; seed 0
    python benchmarks/canvas_table.py --seeds 0 1 2      # the issue's protocol
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import unlearning
from canvas_attack import attacks
from digits_table import parse_set
from unlearning.canvas.check import ALL_PAIRS
from unlearning.canvas.judges import held_out_accuracy
from unlearning.canvas.protocol import per_class, scores
from unlearning.canvas.sampling import accuracies, draw_pairs, load_pipeline

# as in audit_table.py: the quick audit's attack length, over the forget target lethe.json chooses
# (the anchor for a digit, the ascent for a style)
ROBUST = {"adversarial_steps": 50}
VARIANTS = {  # name: (method, hyperparameters beyond the model's lethe.json and --set)
    "rg": ("rg", {}),
    "graddiff": ("graddiff", {}),
    "ga": ("ga", {}),
    "esd": ("esd", {}),
    "rg+robust": ("rg", ROBUST),
}
DEFAULT_STYLES = ("dots", "red", "stripes")
DEFAULT_DIGITS = ("seven", "three", "zero")


def jobs(styles: list[str], digits: list[str], kinds: list[str]) -> list[tuple[str, list[list[str]]]]:
    """(kind, stages): each stage is the concepts of one erase() call, on the previous result."""
    found = []
    if "style" in kinds:
        found += [("style", [[s]]) for s in styles]
    if "digit" in kinds:
        found += [("digit", [[d]]) for d in digits]
    if "multi" in kinds:
        found.append(("multi", [list(styles)]))
    if "sequence" in kinds:
        found.append(("sequence", [[s] for s in styles]))
    if "chain" in kinds:
        found.append(("chain", [[styles[0]], [digits[0]]]))
    return found


def judged(folder: Path, seed: int, per_pair: int) -> dict:
    return accuracies(draw_pairs(load_pipeline(folder), ALL_PAIRS, per_pair, seed))


def run_job(model: Path, variant: str, stages: list[list[str]], seed: int, overrides: dict, work: Path):
    """Erase stage after stage; the last version's folder, the seconds of all erase() calls and
    the steps each stage ran (fewer than `steps` where the erasure check stopped it)."""
    method, extra = VARIANTS[variant]
    hyperparameters = {**overrides, **extra}
    base, erased, seconds, steps = model, [], 0.0, []
    for i, concepts in enumerate(stages):
        out = work / f"{method}-{seed}-{i}"
        started = time.perf_counter()
        result = unlearning.erase(base, concepts, out, method=method, seed=seed, cache_dir=work / "cache",
                                  hyperparameters=hyperparameters or None, audit="off", erased=erased)
        seconds += time.perf_counter() - started
        steps.append(len(result.history))
        if base != model:
            shutil.rmtree(base)
        base, erased = out, erased + concepts
    return base, seconds, steps


def spread(values: list, digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows: list[dict], methods, label=lambda row: f"{row['kind']}: {', '.join(row['erased'])}") -> str:
    """One line per job (or per `label` of a row) and method: mean ± standard deviation over runs."""
    lines = ["| job | method | UA ↑ | IRA ↑ | CRA ↑ | time (s) | steps | runs |", "|---|---|---|---|---|---|---|---|"]
    for job in dict.fromkeys(label(r) for r in rows):
        for method in ("original", *methods):
            mine = [r for r in rows if label(r) == job and r["method"] == method]
            if mine:
                lines.append(f"| {job} | {method} | {spread([r['UA'] for r in mine], 2)} | "
                             f"{spread([r['IRA'] for r in mine], 2)} | {spread([r['CRA'] for r in mine], 2)} | "
                             f"{spread([r['seconds'] for r in mine], 0)} | "
                             f"{spread([sum(r['steps']) for r in mine if 'steps' in r], 0)} | {len(mine)} |")
    return "\n".join(lines)


def tables(rows: list[dict], methods) -> str:
    """Per job; then, for a kind of several jobs (each style, each digit), all its jobs together."""
    jobs_of = {}
    for row in rows:
        jobs_of.setdefault(row["kind"], set()).add(tuple(row["erased"]))
    several = [r for r in rows if len(jobs_of[r["kind"]]) > 1]
    per_job = markdown(rows, methods)
    return per_job + "\n\n" + markdown(several, methods, label=lambda r: f"every {r['kind']}") if several else per_job


def attack_table(rows: list[dict], methods) -> str:
    """Per erased class and method: the attack's success at both strengths, mean ± sd over seeds."""
    lines = ["| erased | method | attack, quick ↓ | attack, full ↓ | runs |", "|---|---|---|---|---|"]
    attacked = [r for r in rows if "attack_quick" in r]
    for erased in dict.fromkeys(r["erased"][0] for r in attacked):
        for method in ("original", *methods):
            mine = [r for r in attacked if r["erased"][0] == erased and r["method"] == method]
            if mine:
                lines.append(f"| {erased} | {method} | {spread([r['attack_quick'] for r in mine], 2)} | "
                             f"{spread([r['attack_full'] for r in mine], 2)} | {len(mine)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES))
    parser.add_argument("--digits", nargs="+", default=list(DEFAULT_DIGITS))
    parser.add_argument("--jobs", nargs="+", default=["style", "digit", "multi", "chain"],
                        choices=["style", "digit", "multi", "sequence", "chain"])
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help=f"rg+robust is rg with {ROBUST}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-pair", type=int, default=5, help="images drawn per style x digit pair and model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="a hyperparameter for every method (e.g. steps=200); recorded in the JSON")
    parser.add_argument("--attack", action="store_true", help="also attack each job of one class (canvas_attack.py)")
    parser.add_argument("--json", type=Path, default=Path("canvas_table.json"))
    args = parser.parse_args(argv)
    overrides, rows = parse_set(args.set), []
    original = {seed: judged(args.model, seed, args.per_pair) for seed in args.seeds}
    original_pipe = load_pipeline(args.model) if args.attack else None
    attacked = (lambda folder, erased, seed: attacks(load_pipeline(folder), original_pipe, erased, seed)) \
        if args.attack else (lambda folder, erased, seed: {})
    with tempfile.TemporaryDirectory(prefix="canvas-table-") as work:
        for kind, stages in jobs(args.styles, args.digits, args.jobs):
            erased = [c for stage in stages for c in stage]
            for seed in args.seeds:
                rows.append({"kind": kind, "erased": erased, "method": "original", "seed": seed,
                             **scores(original[seed], erased), "seconds": 0.0, **attacked(args.model, erased, seed)})
                for method in args.methods:
                    folder, seconds, steps = run_job(args.model, method, stages, seed, overrides, Path(work))
                    accuracy = judged(folder, seed, args.per_pair)
                    row = {"kind": kind, "erased": erased, "method": method, "seed": seed,
                           **scores(accuracy, erased), "seconds": seconds, "steps": steps,
                           **attacked(folder, erased, seed), "per_class": per_class(accuracy)}
                    shutil.rmtree(folder)
                    rows.append(row)
                    print(f"  {method} {kind} {erased} seed {seed}: UA {row['UA']:.2f} IRA {row['IRA']:.2f} "
                          f"CRA {spread([row['CRA']], 2)} {seconds:.0f} s, steps {steps}"
                          + "".join(f", {k} {v:.2f}" for k, v in row.items() if k.startswith("attack")),
                          file=sys.stderr, flush=True)
    table = tables(rows, args.methods)
    if args.attack:
        table += "\n\n" + attack_table(rows, args.methods)
    print(table)
    args.json.write_text(json.dumps({
        "command": "python benchmarks/canvas_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model), "seeds": args.seeds, "per_pair": args.per_pair, "overrides": overrides,
        "robust": ROBUST,
        "judges_held_out_accuracy": {kind: held_out_accuracy(kind) for kind in ("digit", "style")},
        "rows": rows, "markdown": table,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
