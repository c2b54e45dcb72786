"""Where one erasure on the canvas model lands, class by class: what the protocol's mean hides.

Erases one style or digit (`unlearning.erase`: the model's lethe.json, any --set), then draws
every style x digit pair (--per-pair images, the stock call, the job's seed) from the original
and from the result, and prints per class of the other kind:

- found: the share of the erased class's images still judged as it (UA is 1 minus its mean);
- kept: the share of the erased class's images whose other kind is still judged right (for a
  digit, its style): what a prompt naming the erased class keeps;
- others: the same accuracy on the other classes' images (for a digit, the style of the other
  digits): what the rest of the model keeps;
- detector: the share of the erased class's images in which the erasure check's detector
  (`unlearning/audit/stop.py`, fitted as the job fits it) finds the concept;

and what the erased class's images are judged as, of both kinds; then, per other class of the
erased one's kind (the parts of IRA), the share of its images judged right and what the rest are
judged as.

    python benchmarks/canvas_breakdown.py zero --seed 1
    python benchmarks/canvas_breakdown.py seven --set trainable='"cross_attention_keys"' --set learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import unlearning
from unlearning.audit.stop import image_features
from unlearning.canvas.check import ALL_PAIRS
from unlearning.canvas.judges import recognise
from unlearning.canvas.protocol import KINDS, class_of
from unlearning.canvas.sampling import draw_pairs, load_pipeline

sys.path.insert(0, str(Path(__file__).parent))
from canvas_table import parse_set  # noqa: E402
from canvas_trajectory import prepared  # noqa: E402


def fitted_detector(model: Path, concept: str, seed: int, hyperparameters: dict, work: Path):
    """The erasure check's detector for `concept`, fitted on the original as an rg job fits it
    (its training images land in work/cache, where the erasure takes them from)."""
    check = prepared(model, [concept], "rg", seed, {**hyperparameters, "stop_when_erased": 0.0}, work)[-1]
    return None if check is None else check.detectors[concept]


def detected(detector, images: np.ndarray) -> float:
    return float(np.mean(detector.predict(image_features(torch.from_numpy(images))) == 1))


def breakdown(folder: Path, concept: str, seed: int, per_pair: int, detector) -> dict:
    """Per class of the other kind: found, kept, others, detector; and what the erased images are judged as."""
    kind, erased = class_of(concept)
    other = next(k for k in KINDS if k != kind)
    images = draw_pairs(load_pipeline(folder), ALL_PAIRS, per_pair, seed)
    judged = {pair: {k: recognise(batch, k) for k in KINDS} for pair, batch in images.items()}
    rows, seen = {}, {k: Counter() for k in KINDS}
    for index, name in enumerate(KINDS[other]):
        mine = {pair: judged[pair] for pair in images if _index(pair, other) == index}
        erased_pair = next(pair for pair in mine if _index(pair, kind) == erased)
        for k in KINDS:
            seen[k].update(KINDS[k][i] for i in mine[erased_pair][k])
        rows[name] = {
            "found": float(np.mean(mine[erased_pair][kind] == erased)),
            "kept": float(np.mean(mine[erased_pair][other] == index)),
            "others": float(np.mean([np.mean(j[other] == index) for p, j in mine.items() if p != erased_pair])),
            "detector": None if detector is None else detected(detector, images[erased_pair]),
        }
    return {"per_class": rows, "judged_as": {k: dict(seen[k].most_common()) for k in KINDS},
            "siblings": siblings(judged, kind, erased)}


def siblings(judged: dict, kind: str, erased: int) -> dict:
    """Per other class of the erased one's kind (IRA's parts): the share of its images judged
    right, and what the others are judged as."""
    found = {}
    for index, name in enumerate(KINDS[kind]):
        if index == erased:
            continue
        labels = np.concatenate([j[kind] for pair, j in judged.items() if _index(pair, kind) == index])
        wrong = Counter(KINDS[kind][i] for i in labels if i != index)
        found[name] = {"right": float(np.mean(labels == index)), "judged_as": dict(wrong.most_common())}
    return found


def _index(pair: tuple[int, int], kind: str) -> int:
    digit, style = pair
    return style if kind == "style" else digit


def markdown(found: dict) -> str:
    lines = ["| class | original: found | kept | others | detector | erased: found | kept | others | detector |",
             "|---|---|---|---|---|---|---|---|---|"]
    cell = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for name, before in found["original"]["per_class"].items():
        after = found["erased"]["per_class"][name]
        lines.append(f"| {name} | " + " | ".join(cell(r[k]) for r in (before, after)
                                                 for k in ("found", "kept", "others", "detector")) + " |")
    lines += ["", "| sibling | original: right | erased: right | erased: the wrong ones judged as |", "|---|---|---|---|"]
    for name, before in found["original"]["siblings"].items():
        after = found["erased"]["siblings"][name]
        wrong = ", ".join(f"{k} {n}" for k, n in after["judged_as"].items()) or "—"
        lines.append(f"| {name} | {before['right']:.2f} | {after['right']:.2f} | {wrong} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("concept", help="a style or a digit of the canvas model")
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--method", default="rg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-pair", type=int, default=5, help="images drawn per style x digit pair and model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a hyperparameter")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        class_of(args.concept)
    except ValueError as error:
        parser.error(str(error))
    hyperparameters = parse_set(args.set)
    with tempfile.TemporaryDirectory(prefix="canvas-breakdown-") as work:
        work = Path(work)
        detector = fitted_detector(args.model, args.concept, args.seed, hyperparameters, work / "check")
        result = unlearning.erase(args.model, [args.concept], work / "out", method=args.method, seed=args.seed,
                                  cache_dir=work / "check" / "cache", hyperparameters=hyperparameters or None, audit="off")
        found = {"original": breakdown(args.model, args.concept, args.seed, args.per_pair, detector),
                 "erased": breakdown(work / "out", args.concept, args.seed, args.per_pair, detector),
                 "steps": len(result.history)}
    table = markdown(found)
    print(table)
    for name in ("original", "erased"):
        print(f"{name}: the erased class's images judged as {json.dumps(found[name]['judged_as'])}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "command": "python benchmarks/canvas_breakdown.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "concept": args.concept, "method": args.method, "seed": args.seed, "per_pair": args.per_pair,
            "hyperparameters": hyperparameters, **found, "markdown": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
