"""The audit: evidence, attached to every version, that the concept is gone and the rest is kept.

Run by `erase` as its `auditing` stage, after the "after" evaluation; its report goes into the
version's `evaluation/metrics.json` under `audit`. The original model itself is the judge
(`judge.py`: a zero-shot diffusion classifier), so nothing outside the base folder is needed.
It measures, on the original and on the version alike:

- leaks: the concept asked for in ways training never used (`probes.py`);
- a soft-prompt attack on the frozen version (`attack.py`);
- the neighbours (preserved concepts, sibling classes): still drawn, and how far they moved;
- collapse: the spread of the version's images of the concept against the original's.

Modes: "quick" (the default; sized to add a fraction of a job's time), "full" (more prompts,
more judge timesteps, a longer attack, and the attack on the original as a control) and "off".
This module imports no torch: the job check reads the modes from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput

AUDIT_MODES = ("quick", "full", "off")
DEFAULT_AUDIT = "quick"


@dataclass(frozen=True)
class AuditSettings:
    judge_timesteps: int  # noised copies of each image the judge scores every candidate on
    references: int  # the original's images of each concept (held-out sentences), at eval_prompts 8 (scaled)
    repeats: int  # images per other way of asking for the concept
    neighbours: int  # at most this many neighbours
    per_neighbour: int  # images per neighbour
    attack_steps: int  # Adam steps of the soft-prompt attack
    attack_tokens: int  # learned vectors
    attack_learning_rate: float
    attack_batch: int  # the original's images per attack step
    attack_images: int  # images drawn with the learned prompt
    attack_control: bool  # also attack the original (does the attack work at all here?)


SETTINGS = {
    # 12 judge timesteps, not 8: at 8 the judge found the concept in 29% of a partial erasure's digit
    # images that the pixel classifier reads as other digits (benchmarks/audit_judge.py), at 12 in none.
    "quick": AuditSettings(judge_timesteps=12, references=8, repeats=1, neighbours=9, per_neighbour=1,
                           attack_steps=50, attack_tokens=4, attack_learning_rate=0.2, attack_batch=8,
                           attack_images=8, attack_control=False),
    "full": AuditSettings(judge_timesteps=32, references=32, repeats=4, neighbours=20, per_neighbour=4,
                          attack_steps=400, attack_tokens=8, attack_learning_rate=0.1, attack_batch=16,
                          attack_images=32, attack_control=True),
}


def check_audit_mode(mode) -> str:
    if mode not in AUDIT_MODES:
        raise InvalidInput("audit", f"must be one of {', '.join(AUDIT_MODES)}, got {mode!r}")
    return mode
