"""Where an erasure's in-domain loss lies, pair by pair, on the canvas model (models/canvas).

Erases one class with rg at the model's defaults (and any --set), then draws every style x digit
pair --per-pair times on the original and on the version (the stock call, the job's seed) and
judges each image's class of the erased class's kind. It prints the pairs of the kept classes
that either model draws wrong, with what the version's wrong images were judged as, and writes
them to --json. The protocol (`canvas_table.py`) draws 5 images a pair; more images a pair tell
one pair's collapse from judging noise.

    python benchmarks/canvas_pairs.py --concept three --seed 0 --per-pair 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import unlearning
from canvas_table import parse_set
from unlearning.canvas.check import ALL_PAIRS
from unlearning.canvas.judges import recognise
from unlearning.canvas.protocol import KINDS, class_of, class_of_pair
from unlearning.canvas.sampling import draw_pairs, load_pipeline


def judged(folder: Path, kind: str, seed: int, per_pair: int) -> dict:
    """{(digit, style): the judged class of each image}, for one kind."""
    drawn = draw_pairs(load_pipeline(folder), ALL_PAIRS, per_pair, seed)
    return {pair: recognise(images, kind) for pair, images in drawn.items()}


def kept_pairs(original: dict, erased: dict, kind: str, gone: int) -> list[dict]:
    """The pairs of kept classes that either model draws wrong at least once."""
    names, found = KINDS[kind], []
    for pair, labels in erased.items():
        want = class_of_pair(pair, kind)
        before, after = float(np.mean(original[pair] == want)), float(np.mean(labels == want))
        if want != gone and min(before, after) < 1:
            found.append({"digit": KINDS["digit"][pair[0]], "style": KINDS["style"][pair[1]],
                          "original": before, "erased": after,
                          "judged_as": [names[label] for label in labels if label != want]})
    return found


def in_domain(labels: dict, kind: str, gone: int) -> float:
    kept = [np.mean(v == class_of_pair(p, kind)) for p, v in labels.items() if class_of_pair(p, kind) != gone]
    return float(np.mean(kept))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--concept", required=True, help="a style or a digit of the canvas model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-pair", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a hyperparameter over the defaults")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        kind, gone = class_of(args.concept)
    except ValueError as error:
        parser.error(f"--concept: {error}")
    overrides = parse_set(args.set)
    original = judged(args.model, kind, args.seed, args.per_pair)
    with tempfile.TemporaryDirectory(prefix="canvas-pairs-") as work:
        started = time.perf_counter()
        unlearning.erase(args.model, [args.concept], Path(work) / "out", method="rg", seed=args.seed,
                         cache_dir=Path(work) / "cache", hyperparameters=overrides or None, audit="off")
        seconds = time.perf_counter() - started
        erased = judged(Path(work) / "out", kind, args.seed, args.per_pair)
    result = {
        "command": "python benchmarks/canvas_pairs.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "concept": args.concept, "seed": args.seed, "per_pair": args.per_pair, "overrides": overrides,
        "seconds": round(seconds, 1),
        "IRA": {"original": in_domain(original, kind, gone), "erased": in_domain(erased, kind, gone)},
        "UA": float(1 - np.mean([np.mean(v == gone) for p, v in erased.items() if class_of_pair(p, kind) == gone])),
        "pairs": kept_pairs(original, erased, kind, gone),
    }
    print(f"{args.concept}, seed {args.seed}, {args.per_pair} a pair, {overrides or 'the defaults'}: "
          f"UA {result['UA']:.3f}, IRA {result['IRA']['erased']:.4f} (original {result['IRA']['original']:.4f})")
    for row in result["pairs"]:
        print(f"  {row['digit']:>6} {row['style']:>8}: original {row['original']:.2f}, erased {row['erased']:.2f}, "
              f"wrong as {row['judged_as']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
