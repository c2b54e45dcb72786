"""The audit's figures beside UA/RA/KID, on the digits model, for each method and the robust mode.

For each method (and rg in its robust mode, `adversarial_steps`) and seed, erase one digit with
`unlearning.erase` (the method's defaults and the model's lethe.json, as digits_table.py), then:

- UA, RA, KID: digits_table.py's `scores` (the pixel classifier and KID on 50 images per digit);
- the audit's figures, at its quick settings, judged by the original model: leak rate,
  neighbours kept and their distance, spread ratio, and the soft-prompt attack's success (the
  judge finds the digit *and* the image looks real) at the audit's attack steps and at LONGER
  times as many; both attacks draw `--attack-images` images (the audit's 8 give steps of 12.5%);
- time: the erase call without its audit, its loop, and the audit.

The audit runs inside the erase, where the original's weights and images are at hand: for this
script `unlearning.api.run_audit` is replaced by `audits`, which runs the Auditor twice.

    OMP_NUM_THREADS=1 python benchmarks/audit_table.py --seeds 0 1 2 --json benchmarks/audit_table.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import unlearning
import unlearning.api
from digits_table import original_rows, parse_set, scores, spread
from unlearning.audit import SETTINGS
from unlearning.audit.run import Auditor, original_in_place
from unlearning.digits.data import CLASSES
from unlearning.digits.sampling import draw_digits, load_pipeline

ROBUST = {"adversarial_steps": 50}  # the quick audit's attack length; a search every 25 steps (the default)
VARIANTS = {  # name: (method, hyperparameters beyond the model's lethe.json)
    "rg": ("rg", {}),
    "graddiff": ("graddiff", {}),
    "ga": ("ga", {}),
    "esd": ("esd", {}),
    "rg+robust": ("rg", ROBUST),
    "rg+robust/10": ("rg", {**ROBUST, "adversarial_every": 10}),
}
LONGER = 2.5  # the second attack's steps, in multiples of the audit's
FIGURES = ("leak_rate", "attack_success", "attack_success_longer", "neighbour_accuracy", "neighbour_distance",
           "spread_ratio")


def audits(attack_images: int):
    """A stand-in for `run_audit`: the quick audit with `attack_images`, and its attack LONGER times as long."""

    def run(pipe, noise, job, original, references, callbacks, checked=None) -> dict:
        settings = replace(SETTINGS["quick"], attack_images=attack_images)
        result = audit(pipe, noise, job, original, references, callbacks, settings, checked)
        longer = audit(pipe, noise, job, original, references, callbacks,
                       replace(settings, attack_steps=round(LONGER * settings.attack_steps)), checked)
        return {**result, "attack_success_longer": longer["attack_success"], "longer_seconds": longer["seconds"]}

    return run


def audit(pipe, noise, job, original, references, callbacks, settings, checked) -> dict:
    auditor = Auditor(pipe, noise, job, settings, lambda: original_in_place(pipe.unet, original))
    return auditor.run(references, callbacks, checked)


def erasure_row(model: Path, name: str, digit: int, seed: int, per_digit: int, overrides: dict, reference: dict,
                work: Path) -> dict:
    method, settings = VARIANTS[name]
    out = work / f"{name}-{digit}-{seed}"
    started = time.perf_counter()
    result = unlearning.erase(model, [CLASSES[digit]], out, method=method, seed=seed,
                              hyperparameters={**settings, **overrides} or None, cache_dir=work / "cache")
    seconds = time.perf_counter() - started
    images = draw_digits(load_pipeline(out), range(10), per_digit, seed)
    shutil.rmtree(out)
    found = result.audit
    row = {"method": name, "digit": digit, "seed": seed, **scores(images, reference[seed], digit),
           **{f: found.get(f) for f in FIGURES}, "audit": found,
           "seconds": seconds - result.seconds["auditing"], "unlearning_seconds": result.seconds["unlearning"],
           "audit_seconds": found.get("seconds"), "config": result.manifest["config"]}
    print(f"  {name} forgetting {CLASSES[digit]} (seed {seed}): UA {row['UA']:.2f} RA {row['RA']:.3f} "
          f"KID {row['KID']:.4f} leak {row['leak_rate']} attack {row['attack_success']} / "
          f"{row['attack_success_longer']} (x{LONGER}) {row['seconds']:.0f} s", file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict], names) -> str:
    lines = ["| model | UA ↑ | RA ↑ | KID ↓ | leak ↓ | attack ↓ | attack x2.5 ↓ | neighbours kept ↑ "
             "| neighbour distance ↓ | spread ratio | time (s) | loop (s) | audit (s) | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        mine = [r for r in rows if r["method"] == name]
        if not mine:
            continue

        def cell(key: str, digits: int) -> str:
            values = [r[key] for r in mine if r.get(key) is not None]
            return spread(values, digits) if values else "n/a"

        lines.append(f"| {name} | {cell('UA', 2)} | {cell('RA', 3)} | {cell('KID', 4)} | {cell('leak_rate', 2)} | "
                     f"{cell('attack_success', 2)} | {cell('attack_success_longer', 2)} | "
                     f"{cell('neighbour_accuracy', 2)} | {cell('neighbour_distance', 2)} | {cell('spread_ratio', 2)} | "
                     f"{cell('seconds', 0)} | {cell('unlearning_seconds', 0)} | {cell('audit_seconds', 0)} | {len(mine)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--digit", type=int, default=7)
    parser.add_argument("--methods", nargs="+", default=[n for n in VARIANTS if n != "rg+robust/10"], choices=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-digit", type=int, default=50, help="images drawn per digit and model (UA, RA, KID)")
    parser.add_argument("--attack-images", type=int, default=32, help="images each soft prompt draws")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="a hyperparameter for every run (e.g. steps=200); recorded in the JSON")
    parser.add_argument("--robust", action="append", default=[], metavar="KEY=JSON",
                        help=f"a setting of the robust run (default {ROBUST}); recorded in the JSON")
    parser.add_argument("--json", type=Path, default=Path("audit_table.json"))
    args = parser.parse_args(argv)
    overrides = parse_set(args.set)
    VARIANTS["rg+robust"][1].update(parse_set(args.robust))
    unlearning.api.run_audit = audits(args.attack_images)
    rows, reference = original_rows(args.model, [args.digit], args.seeds, args.per_digit)
    record = {"command": "python benchmarks/audit_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "model": str(args.model), "digit": args.digit, "seeds": args.seeds, "per_digit": args.per_digit,
              "attack_images": args.attack_images, "longer": LONGER, "robust": ROBUST, "overrides": overrides}
    with tempfile.TemporaryDirectory(prefix="audit-table-") as work:
        for seed in args.seeds:  # seed by seed: a partial run still covers every method
            for name in args.methods:
                rows.append(erasure_row(args.model, name, args.digit, seed, args.per_digit, overrides, reference, Path(work)))
                table = markdown(rows, ["original", *args.methods])
                args.json.write_text(json.dumps({**record, "rows": rows, "markdown": table}, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
