"""How alike the canvas model's text states of the ten digit words are, before and after whitening.

The states are the text encoder's output for "a handwritten <digit> in red style", at the digit
word and at each position after it. Three cosines between digits, averaged over the 45 pairs:
raw, centred (less the mean over the ten digits), and whitened as `key_value_whitening` whitened
until 2026-12-06 (`unlearning.whitening`, the second moment of every token state of every training
sentence of every style x digit pair). Also the largest eigenvalues of that second moment, scaled to a mean
of 1, and each digit's nearest digit once whitened.

Then a step's reach: a step on a key or value projection for the erased digit c's state s_c moves
another digit d's key or value by s_c^T P s_d for every unit it moves c's own by s_c^T P s_c, with
P the identity (no whitening), (M + damping)^-1 with M from every sentence (the whitening until
2026-12-06), or with M from the sentences the job keeps (every sentence of the other digits and
the empty prompt: `key_value_whitening` now). Per erased digit, at the digit word: the mean of
that ratio over the other nine digits, the digit it reaches most, and s_c^T P s_c.

    python benchmarks/canvas_text_states.py --damping 0.001 --json benchmarks/canvas_sweep/text_states.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from unlearning.families import Conditioning
from unlearning.pipeline import load_pipeline
from unlearning.whitening import second_moment, whitening_pair

DIGIT_POSITION = 3  # <start> a handwritten <digit> in red style <end>


def states(pipe, prompts: list[str]) -> torch.Tensor:
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def mean_cosine(vectors: torch.Tensor) -> tuple[float, torch.Tensor]:
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    cosines = unit @ unit.T
    off_diagonal = cosines[~torch.eye(len(vectors), dtype=torch.bool)]
    return off_diagonal.mean().item(), cosines


def step_reach(by_digit: dict, empty: Conditioning, at_word: torch.Tensor, precondition: str | None,
               damping: float) -> dict:
    """Per digit c: mean and largest over the other digits d of s_c^T P s_d / s_c^T P s_c, and
    s_c^T P s_c itself (how far a step of a given size in the trained coordinates moves c's own).
    `by_digit`: each digit's training sentences' states."""
    digits = list(by_digit)
    reach = {}
    for c, digit in enumerate(digits):
        if precondition is None:
            inverse = torch.eye(at_word.shape[-1])
        else:
            parts = [by_digit[d] for d in digits if precondition == "every" or d != digit]
            whiten, _ = whitening_pair(second_moment(parts + ([empty] if precondition == "kept" else [])), damping)
            inverse = whiten @ whiten
        moved = at_word @ (inverse @ at_word[c])
        ratios = {d: (moved[i] / moved[c]).item() for i, d in enumerate(digits) if i != c}
        most = max(ratios, key=lambda d: abs(ratios[d]))
        reach[digit] = {"mean": sum(abs(r) for r in ratios.values()) / len(ratios), "most": most, "max": ratios[most],
                        "own": moved[c].item()}
    return reach


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/canvas"))
    parser.add_argument("--damping", type=float, default=0.001)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    vocabulary = json.loads((args.model / "lethe.json").read_text())["prompts"]
    digits, styles = vocabulary["classes"]["digit"], vocabulary["classes"]["style"]
    by_digit = {d: Conditioning(states(pipe, [t.format(digit=d, style=s) for t in vocabulary["templates"] for s in styles]))
                for d in digits}
    moment = second_moment(list(by_digit.values()))
    scaled = torch.linalg.eigvalsh(moment / (moment.trace() / moment.shape[0])).flip(0)
    whiten, _ = whitening_pair(moment, args.damping)
    sentence = states(pipe, [f"a handwritten {d} in red style" for d in digits])
    positions = {}
    for position in range(DIGIT_POSITION, DIGIT_POSITION + 4):
        at = sentence[:, position]
        raw, _ = mean_cosine(at)
        centred, _ = mean_cosine(at - at.mean(0))
        white, cosines = mean_cosine(at @ whiten)
        positions[position] = {"raw": raw, "centred": centred, "whitened": white}
        if position == DIGIT_POSITION:
            nearest = {d: digits[int((cosines[i] - 2 * torch.eye(len(digits))[i]).argmax())] for i, d in enumerate(digits)}
            whitened_at_word = cosines
    empty = Conditioning(states(pipe, [""]))
    reach = {name: step_reach(by_digit, empty, sentence[:, DIGIT_POSITION], precondition, args.damping)
             for name, precondition in (("plain", None), ("every sentence", "every"), ("kept sentences", "kept"))}
    report = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "damping": args.damping,
        "largest_eigenvalues": [round(v, 4) for v in scaled[:6].tolist()],
        "cosines_by_position": positions,
        "nearest_once_whitened": nearest,
        "whitened_cosines_at_the_word": [[round(v, 3) for v in row] for row in whitened_at_word.tolist()],
        "step_reach_at_the_word": reach,
    }
    print(f"second moment, scaled to a mean eigenvalue of 1: largest {', '.join(f'{v:.2f}' for v in report['largest_eigenvalues'])}")
    print("| position | raw | centred | whitened |\n|---|---|---|---|")
    for position, row in positions.items():
        print(f"| {position} | {row['raw']:.3f} | {row['centred']:.3f} | {row['whitened']:.3f} |")
    print("nearest digit once whitened:", ", ".join(f"{d} -> {n}" for d, n in nearest.items()))
    print("\n| a step for | " + " | ".join(reach) + " |\n|---|" + "---|" * len(reach))
    for digit in digits:
        print(f"| {digit} | " + " | ".join(f"{r[digit]['mean']:.3f} (most: {r[digit]['most']} {r[digit]['max']:.3f}; own {r[digit]['own']:.3g})"
                                          for r in reach.values()) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
