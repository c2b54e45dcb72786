"""The UnlearnCanvas protocol's figures (Zhang et al., 2024), on the canvas model.

After erasing styles and/or digits, every style x digit pair is drawn and judged twice
(`sampling.accuracies`). With E the erased classes of each kind:

- UA: for each erased class, the share of its pairs' images not judged as it; the mean;
- IRA (in-domain retain): for each kind with an erased class, the accuracy of that kind on
  the pairs whose class of that kind is not erased; the mean;
- CRA (cross-domain retain): the accuracy of the other kind on *all* pairs, the erased
  classes' included (None when both kinds have an erased class: a chain of a style, then a digit).
"""

from __future__ import annotations

import numpy as np

from ..digits.data import CLASSES as DIGITS
from .styles import NAMES as STYLES

KINDS = {"style": STYLES, "digit": DIGITS}


def class_of(concept: str) -> tuple[str, int]:
    """("style" or "digit", its index), or ValueError naming the concept."""
    for kind, names in KINDS.items():
        if concept in names:
            return kind, names.index(concept)
    raise ValueError(f"concept must be a style {list(STYLES)} or a digit {list(DIGITS)}, got {concept!r}")


def class_of_pair(pair: tuple[int, int], kind: str) -> int:
    """The class of one kind that a (digit, style index) pair asks for."""
    digit, style = pair
    return style if kind == "style" else digit


def _mean(accuracy: dict, kind: str, keep) -> float:
    return float(np.mean([a[kind] for pair, a in accuracy.items() if keep(class_of_pair(pair, kind))]))


def scores(accuracy: dict, erased: list[str]) -> dict:
    """UA, IRA and CRA of one version's judged pairs after erasing the `erased` classes."""
    by_kind: dict[str, set[int]] = {}
    for concept in erased:
        kind, index = class_of(concept)
        by_kind.setdefault(kind, set()).add(index)
    unlearned = [1.0 - _mean(accuracy, kind, lambda c, i=index: c == i)
                 for kind, indices in by_kind.items() for index in sorted(indices)]
    in_domain = [_mean(accuracy, kind, lambda c, gone=indices: c not in gone) for kind, indices in by_kind.items()]
    cross = [_mean(accuracy, kind, lambda c: True) for kind in KINDS if kind not in by_kind]
    return {"UA": float(np.mean(unlearned)), "IRA": float(np.mean(in_domain)),
            "CRA": float(np.mean(cross)) if cross else None}


def per_class(accuracy: dict) -> dict:
    """{kind: {class: {kind: accuracy}}}: both kinds' accuracy over the pairs of each class, what
    the means of `scores` hide (which kept style lost its digits, say)."""
    found = {}
    for kind, names in KINDS.items():
        found[kind] = {}
        for index, name in enumerate(names):
            judged = [a for pair, a in accuracy.items() if class_of_pair(pair, kind) == index]
            found[kind][name] = {k: round(float(np.mean([a[k] for a in judged])), 3) for k in KINDS}
    return found
