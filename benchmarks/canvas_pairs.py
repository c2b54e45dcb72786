"""Where an erasure's in-domain loss lies, pair by pair, on the canvas model (models/canvas).

Erases one class with rg at the model's defaults (and any --set), then draws every style x digit
pair --per-pair times on the original and on the version (the stock call, the job's seed) and
judges each image's class of the erased class's kind. It prints the pairs of the kept classes
that either model draws wrong, with what the version's wrong images were judged as, and writes
them to --json. The protocol (`canvas_table.py`) draws 5 images a pair; more images a pair tell
one pair's collapse from judging noise.

With --branches it also draws every pair with the two branches of the guided call taken from
different models: the version's conditional branch with the original's unconditional one, and the
other way round. The sampler steps with e(empty) + s (e(c) - e(empty)); this tells whether a kept
pair falls by its own sentence's prediction or by the empty prompt's.

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
import torch

import unlearning
from canvas_table import parse_set
from unlearning.canvas.check import ALL_PAIRS
from unlearning.canvas.judges import recognise
from unlearning.canvas.protocol import KINDS, class_of, class_of_pair
from unlearning.canvas.sampling import draw_pairs, load_pipeline


def judged(pipe, kind: str, seed: int, per_pair: int) -> dict:
    """{(digit, style): the judged class of each image}, for one kind."""
    drawn = draw_pairs(pipe, ALL_PAIRS, per_pair, seed)
    return {pair: recognise(images, kind) for pair, images in drawn.items()}


def branches_from(conditional: Path, unconditional: Path):
    """A pipeline whose UNet answers the guided call's unconditional half (the first) with one
    model's UNet and its conditional half with the other's."""
    pipe, other = load_pipeline(conditional), load_pipeline(unconditional).unet
    own, unet_call = pipe.unet, type(pipe.unet).forward

    def forward(sample, t, encoder_hidden_states, **kwargs):
        half = sample.shape[0] // 2
        kwargs["return_dict"] = False
        parts = [unet_call(model, sample[rows], t, encoder_hidden_states[rows], **kwargs)[0]
                 for model, rows in ((other, slice(0, half)), (own, slice(half, None)))]
        return (torch.cat(parts),)

    own.forward = forward  # the pipeline asks for a tuple (return_dict=False)
    return pipe


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


def summary(original: dict, labels: dict, kind: str, gone: int) -> dict:
    """UA and IRA of one set of drawings, and the kept pairs drawn wrong (`kept_pairs`)."""
    erased = [np.mean(v == gone) for p, v in labels.items() if class_of_pair(p, kind) == gone]
    return {"UA": float(1 - np.mean(erased)), "IRA": in_domain(labels, kind, gone),
            "pairs": kept_pairs(original, labels, kind, gone)}


def report(title: str, found: dict) -> None:
    print(f"{title}: UA {found['UA']:.3f}, IRA {found['IRA']:.4f}")
    for row in found["pairs"]:
        print(f"  {row['digit']:>6} {row['style']:>8}: original {row['original']:.2f}, erased {row['erased']:.2f}, "
              f"wrong as {row['judged_as']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--concept", required=True, help="a style or a digit of the canvas model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-pair", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a hyperparameter over the defaults")
    parser.add_argument("--branches", action="store_true",
                        help="also draw with the guided call's two branches from different models")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        kind, gone = class_of(args.concept)
    except ValueError as error:
        parser.error(f"--concept: {error}")
    overrides = parse_set(args.set)
    original = judged(load_pipeline(args.model), kind, args.seed, args.per_pair)
    branches = {}
    with tempfile.TemporaryDirectory(prefix="canvas-pairs-") as work:
        version = Path(work) / "out"
        started = time.perf_counter()
        unlearning.erase(args.model, [args.concept], version, method="rg", seed=args.seed,
                         cache_dir=Path(work) / "cache", hyperparameters=overrides or None, audit="off")
        seconds = time.perf_counter() - started
        erased = summary(original, judged(load_pipeline(version), kind, args.seed, args.per_pair), kind, gone)
        if args.branches:
            for name, models in (("version's conditional, original's unconditional", (version, args.model)),
                                 ("original's conditional, version's unconditional", (args.model, version))):
                branches[name] = summary(original, judged(branches_from(*models), kind, args.seed, args.per_pair), kind, gone)
    result = {
        "command": "python benchmarks/canvas_pairs.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "concept": args.concept, "seed": args.seed, "per_pair": args.per_pair, "overrides": overrides,
        "seconds": round(seconds, 1),
        "IRA": {"original": in_domain(original, kind, gone), "erased": erased["IRA"]},
        "UA": erased["UA"], "pairs": erased["pairs"],
        **({"branches": branches} if branches else {}),
    }
    report(f"{args.concept}, seed {args.seed}, {args.per_pair} a pair, {overrides or 'the defaults'} "
           f"(original IRA {result['IRA']['original']:.4f})", erased)
    for name, found in branches.items():
        report(name, found)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
