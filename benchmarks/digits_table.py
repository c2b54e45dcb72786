"""Class removal on the digits model, in the shape of the paper's tables (METHOD.md section 4).

For each method and each forgotten digit, erase the digit with `unlearning.erase` (the
method's defaults, overridden only by the model's lethe.json and any --set), then draw
images of every digit with the stock pipeline call (50 steps, guidance 7.5) and judge them:

- UA: 1 - the share of the forgotten digit's images still recognised as it;
- RA: the mean share recognised as asked, over the nine other digits;
- KID: between the retained digits' images of the erased model and the original model's,
  same prompts and same sampling seeds, on the judge's 64-pixel feature space (kid.py);
  the original row gives the floor: the original model against itself with other seeds;
- time: wall seconds of the whole erase() call (prompt sets, the original model's training
  latents unless cached, the loop, the library's own evaluation, writing) and of its loop.

    python benchmarks/digits_table.py                      # digits 7, 3, 0; seed 0
    python benchmarks/digits_table.py --all --seeds 0 1 2  # all ten digits, three seeds
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

import numpy as np

import unlearning
from unlearning.digits.classifier import held_out_accuracy
from unlearning.digits.data import CLASSES
from unlearning.digits.kid import kid_of_images
from unlearning.digits.sampling import accuracy_by_digit, draw_digits, load_pipeline

DEFAULT_DIGITS = (7, 3, 0)
METHODS = ("rg", "graddiff", "ga", "esd")
FLOOR_SEED_OFFSET = 10_000  # the original drawn again with other seeds: KID's noise floor


def scores(images: dict[int, np.ndarray], reference: dict[int, np.ndarray], digit: int) -> dict:
    accuracy = accuracy_by_digit(images)
    others = [d for d in images if d != digit]
    return {
        "UA": 1.0 - accuracy[digit],
        "RA": float(np.mean([accuracy[d] for d in others])),
        "KID": kid_of_images(np.concatenate([images[d] for d in others]), np.concatenate([reference[d] for d in others])),
        "accuracy": {CLASSES[d]: a for d, a in accuracy.items()},
    }


def original_rows(model: Path, digits, seeds, per_digit: int) -> tuple[list[dict], dict]:
    """The original model's rows: UA and RA of its own images; KID of a second draw (other
    seeds) against the first, the distance that sampling noise alone gives."""
    pipe = load_pipeline(model)
    reference, rows = {}, []
    for seed in seeds:
        reference[seed] = draw_digits(pipe, range(10), per_digit, seed)
        again = draw_digits(pipe, range(10), per_digit, seed + FLOOR_SEED_OFFSET)
        for digit in digits:
            row = scores(reference[seed], reference[seed], digit)
            row["KID"] = scores(again, reference[seed], digit)["KID"]
            rows.append({"method": "original", "digit": digit, "seed": seed, **row, "seconds": 0.0, "unlearning_seconds": 0.0})
    return rows, reference


def erasure_row(model: Path, method: str, digit: int, seed: int, per_digit: int, overrides: dict,
                reference: dict, work: Path) -> dict:
    out = work / f"{method}-{digit}-{seed}"
    started = time.perf_counter()
    result = unlearning.erase(model, [CLASSES[digit]], out, method=method, seed=seed,
                              hyperparameters=overrides or None, cache_dir=work / "cache")
    seconds = time.perf_counter() - started
    images = draw_digits(load_pipeline(out), range(10), per_digit, seed)
    shutil.rmtree(out)
    row = {"method": method, "digit": digit, "seed": seed, **scores(images, reference[seed], digit),
           "seconds": seconds, "unlearning_seconds": result.seconds.get("unlearning", 0.0),
           "config": result.manifest["config"]}
    print(f"  {method} forgetting {CLASSES[digit]} (seed {seed}): UA {row['UA']:.2f} RA {row['RA']:.3f} "
          f"KID {row['KID']:.4f} {seconds:.0f} s", file=sys.stderr, flush=True)
    return row


def spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows: list[dict], methods) -> str:
    lines = ["| model | UA ↑ | RA ↑ | KID (retained) ↓ | time (s) | loop (s) | runs |", "|---|---|---|---|---|---|---|"]
    for method in ("original", *methods):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        lines.append(
            f"| {method} | {spread([r['UA'] for r in mine], 2)} | {spread([r['RA'] for r in mine], 3)} | "
            f"{spread([r['KID'] for r in mine], 4)} | {spread([r['seconds'] for r in mine], 0)} | "
            f"{spread([r['unlearning_seconds'] for r in mine], 0)} | {len(mine)} |"
        )
    lines += ["", "| model | forgotten | UA | RA | KID |", "|---|---|---|---|---|"]
    for method in ("original", *methods):
        for digit in sorted({r["digit"] for r in rows}):
            mine = [r for r in rows if r["method"] == method and r["digit"] == digit]
            if mine:
                lines.append(f"| {method} | {CLASSES[digit]} | {spread([r['UA'] for r in mine], 2)} | "
                             f"{spread([r['RA'] for r in mine], 3)} | {spread([r['KID'] for r in mine], 4)} |")
    return "\n".join(lines)


def parse_set(pairs: list[str]) -> dict:
    found = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--set {pair!r}: the value must be JSON (a number, null, or a string in "
                             f"quotes, such as forget_target='\"anchor\"')") from None
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--digits", type=int, nargs="+", default=list(DEFAULT_DIGITS))
    parser.add_argument("--all", action="store_true", help="forget each of the ten digits in turn")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-digit", type=int, default=50, help="images drawn per digit and model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="a hyperparameter for every method (e.g. steps=200); recorded in the JSON")
    parser.add_argument("--json", type=Path, default=Path("digits_table.json"))
    args = parser.parse_args(argv)
    digits = list(range(10)) if args.all else args.digits
    overrides = parse_set(args.set)
    rows, reference = original_rows(args.model, digits, args.seeds, args.per_digit)
    with tempfile.TemporaryDirectory(prefix="digits-table-") as work:
        for method in args.methods:
            for digit in digits:
                for seed in args.seeds:
                    rows.append(erasure_row(args.model, method, digit, seed, args.per_digit, overrides, reference, Path(work)))
    table = markdown(rows, args.methods)
    print(table)
    args.json.write_text(json.dumps({
        "command": "python benchmarks/digits_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model), "digits": digits, "seeds": args.seeds, "per_digit": args.per_digit,
        "overrides": overrides, "judge_held_out_accuracy": held_out_accuracy(),
        "kid_features": "64 ink levels of the 8x8 image, scaled to [0, 1]",
        "rows": rows, "markdown": table,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
