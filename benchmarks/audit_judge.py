"""Does the audit's judge (the original model as a zero-shot classifier) see what an independent
classifier sees? On the digits model, against the pixel SVM of `unlearning.digits.classifier`.

Each model (the original, and versions of it with one digit erased: RG and ESD with the
library's defaults, and a short RG run that erases only partly) draws `--per-digit` images of
every digit for each held-out phrasing of `models/digits/lethe.json`, with the stock pipeline
call (50 DDIM steps, guidance 7.5) kept as latents. The SVM reads the decoded images; the
judge (`unlearning.audit.judge.Judge`, the *original* UNet) weighs each latent against its
phrasing with each of the ten digits and with none, at 8 (quick) and 32 (full) timesteps.

- label agreement: the judge's digit (or "none") is the SVM's digit;
- concept agreement: both say the erased digit, or both say it is not (the audit's question).

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
from unlearning.audit.judge import Judge
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


def candidates(template: str) -> list[str]:
    return [render(template, {"concept": c}) for c in CLASSES] + [render(template, {}, "")]


def agreement(judge_labels: np.ndarray, svm_labels: np.ndarray, digit: int) -> dict:
    return {"label": float(np.mean(judge_labels == svm_labels)),
            "concept": float(np.mean((judge_labels == digit) == (svm_labels == digit))),
            "judge_says_digit": float(np.mean(judge_labels == digit)), "svm_says_digit": float(np.mean(svm_labels == digit))}


def model_rows(name: str, folder: Path, original, templates: list[str], digit: int, per_digit: int, timesteps, seed: int) -> list[dict]:
    pipe = load_pipeline(folder, "cpu")
    prompts = [render(t, {"concept": CLASSES[d]}) for t in templates for d in range(10) for _ in range(per_digit)]
    latents = latents_of(pipe, prompts, seed)
    svm = recognise(decode(original, latents).numpy())
    rows = []
    for count in timesteps:
        judge = Judge(original, TrainingNoise(original.scheduler.config), seed, count, batch_size=512)
        started = time.perf_counter()
        verdicts = judge.judge(latents, [candidates(t) for t in templates for _ in range(10 * per_digit)])
        seconds = time.perf_counter() - started
        rows.append({"model": name, "timesteps": count, "images": len(prompts), "seconds": seconds,
                     **agreement(verdicts.labels.numpy(), svm, digit)})
        print(f"  {name}, {count} timesteps: label {rows[-1]['label']:.3f}, concept {rows[-1]['concept']:.3f} "
              f"({seconds:.0f} s)", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], digit: int) -> str:
    lines = [f"| model | timesteps | images | label agreement | {CLASSES[digit]}? agreement | judge: {CLASSES[digit]} | SVM: {CLASSES[digit]} |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['timesteps']} | {r['images']} | {r['label']:.3f} | {r['concept']:.3f} | "
              f"{r['judge_says_digit']:.3f} | {r['svm_says_digit']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--digit", type=int, default=7, help="the digit the versions erase")
    parser.add_argument("--per-digit", type=int, default=8, help="images per digit and phrasing")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("audit_judge.json"))
    args = parser.parse_args(argv)
    templates = read_model_settings(args.model)["prompts"]["test_templates"]
    original = load_pipeline(args.model, "cpu")
    rows = model_rows("original", args.model, original, templates, args.digit, args.per_digit, args.timesteps, args.seed)
    with tempfile.TemporaryDirectory(prefix="audit-judge-") as work:
        for name, (method, settings) in VERSIONS.items():
            out = Path(work) / name
            unlearning.erase(args.model, [CLASSES[args.digit]], out, method=method, hyperparameters=settings or None,
                             seed=args.seed, cache_dir=Path(work) / "cache", audit="off")
            rows += model_rows(name, out, original, templates, args.digit, args.per_digit, args.timesteps, args.seed)
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
