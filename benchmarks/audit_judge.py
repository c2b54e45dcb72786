"""Does the audit's judge (the original model as a zero-shot classifier) see what an independent
classifier sees? On the digits model, against the pixel SVM of `unlearning.digits.classifier`.

Each model (the original, and versions of it with one digit erased: RG and ESD with the
library's defaults, and a short RG run that erases only partly) draws `--per-digit` images of
every digit for each held-out phrasing of `models/digits/lethe.json`, with the stock pipeline
call (50 DDIM steps, guidance 7.5) kept as latents. The SVM reads the decoded images; the
judge (`unlearning.audit.judge.Judge`, the *original* UNet) weighs each latent against its
phrasing with each of the ten digits and with none, at 8, 12 (quick) and 32 (full) timesteps, and
counts the erased digit only above the floor the audit uses (`calibrated_floor` of the
original's own images of it).

- label agreement: the judge's digit (or "none") is the SVM's digit;
- concept agreement: both say the erased digit, or both say it is not (the audit's question);
- and, on the images asked to be the erased digit, the share each reads as it (a leak rate).

    python benchmarks/audit_judge.py                          # seven; 8 images per digit and phrasing
    python benchmarks/audit_judge.py --digit 3 --per-digit 4 --json audit_judge_three.json
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
from unlearning.audit import SETTINGS
from unlearning.audit.judge import Judge, calibrated_floor
from unlearning.audit.sampling import decode
from unlearning.digits.classifier import held_out_accuracy, recognise
from unlearning.digits.data import CLASSES
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline
from unlearning.prompts import read_model_settings, render

VERSIONS = {  # name: (method, hyperparameters beyond the model's lethe.json)
    "rg": ("rg", {}),
    "esd": ("esd", {}),
    "rg-short": ("rg", {"steps": 30, "num_prompts": 48, "generation_steps": 10}),
}
NONE = len(CLASSES)  # the judge's label for "the phrasing without a digit"


def latents_of(pipe, prompts: list[str], seed: int) -> torch.Tensor:
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(len(prompts))]
    with torch.no_grad():
        return pipe(prompts, generator=generators, output_type="latent").images.float()


def candidates(template: str, digit: int) -> list[str]:
    """The erased digit first (the audit's candidate 0), then the other nine, then none."""
    return [render(template, {"concept": CLASSES[d]}) for d in order(digit)[:10]] + [render(template, {}, "")]


def order(digit: int) -> list[int]:
    return [digit, *(d for d in range(10) if d != digit), NONE]


def agreement(verdicts, svm_labels: np.ndarray, asked: np.ndarray, digit: int) -> dict:
    """Agreement over all images (the judge's digit: its best candidate, or none where that is the
    erased digit below the floor); and over the images asked to be `digit`, the share each reads as it."""
    found = verdicts.concept.numpy()
    labels = np.array(order(digit))[verdicts.labels.numpy()]
    labels[(labels == digit) & ~found] = NONE
    mine = asked == digit
    return {"label": float(np.mean(labels == svm_labels)), "concept": float(np.mean(found == (svm_labels == digit))),
            "judge_leak": float(np.mean(found[mine])), "svm_leak": float(np.mean(svm_labels[mine] == digit))}


def judged(original, latents, templates, per_digit: int, digit: int, count: int, seed: int):
    judge = Judge(original, TrainingNoise(original.scheduler.config), seed, count, batch_size=512)
    return judge.judge(latents, [candidates(t, digit) for t in templates for _ in range(10 * per_digit)])


def model_rows(name: str, folder: Path, original, templates: list[str], digit: int, per_digit: int, floors: dict,
               seed: int) -> list[dict]:
    """One row per judge size; `floors` (timesteps: floor) is filled from the original's own images."""
    pipe = load_pipeline(folder, "cpu")
    prompts = [render(t, {"concept": CLASSES[d]}) for t in templates for d in range(10) for _ in range(per_digit)]
    asked = np.array([d for _ in templates for d in range(10) for _ in range(per_digit)])
    latents = latents_of(pipe, prompts, seed)
    svm = recognise(decode(original, latents).numpy())
    rows = []
    for count in floors:
        started = time.perf_counter()
        verdicts = judged(original, latents, templates, per_digit, digit, count, seed)
        seconds = time.perf_counter() - started
        if floors[count] is None:  # the original: its own images of the digit set the floor
            floors[count] = calibrated_floor(verdicts[torch.from_numpy(asked == digit)])
        rows.append({"model": name, "timesteps": count, "floor": floors[count], "images": len(prompts), "seconds": seconds,
                     **agreement(verdicts.with_floor(floors[count]), svm, asked, digit)})
        print(f"  {name}, {count} timesteps: label {rows[-1]['label']:.3f}, concept {rows[-1]['concept']:.3f} "
              f"({seconds:.0f} s)", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], digit: int) -> str:
    name = CLASSES[digit]
    lines = [f"| model | timesteps | images | label agreement | {name}? agreement | {name} prompts read as {name}: judge | SVM |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['timesteps']} | {r['images']} | {r['label']:.3f} | {r['concept']:.3f} | "
              f"{r['judge_leak']:.3f} | {r['svm_leak']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--digit", type=int, default=7, help="the digit the versions erase")
    parser.add_argument("--per-digit", type=int, default=8, help="images per digit and phrasing")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[8, SETTINGS["quick"].judge_timesteps, SETTINGS["full"].judge_timesteps],
                        help="judge sizes (default: 8, and the audit's quick and full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("audit_judge.json"))
    args = parser.parse_args(argv)
    templates = read_model_settings(args.model)["prompts"]["test_templates"]
    original = load_pipeline(args.model, "cpu")
    floors = dict.fromkeys(args.timesteps)
    rows = model_rows("original", args.model, original, templates, args.digit, args.per_digit, floors, args.seed)
    with tempfile.TemporaryDirectory(prefix="audit-judge-") as work:
        for name, (method, settings) in VERSIONS.items():
            out = Path(work) / name
            unlearning.erase(args.model, [CLASSES[args.digit]], out, method=method, hyperparameters=settings or None,
                             seed=args.seed, cache_dir=Path(work) / "cache", audit="off")
            rows += model_rows(name, out, original, templates, args.digit, args.per_digit, floors, args.seed)
    table = markdown(rows, args.digit)
    print(table)
    args.json.write_text(json.dumps({
        "command": "python benchmarks/audit_judge.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model), "digit": args.digit, "templates": templates, "per_digit": args.per_digit,
        "svm_held_out_accuracy": held_out_accuracy(), "rows": rows, "markdown": table,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
