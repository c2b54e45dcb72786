"""The two judges: which digit, and which style, a 16x16 image shows.

Each is a support-vector machine on the image's leading principal components, seeded and
retrained in seconds from the renderings of the judge part's digits (which the generator
never saw), so nothing binary is committed. Both are tested on the judge's held-out part.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import SVC

from ..digits.data import load_split
from .data import Renderings, render

COMPONENTS = {"digit": 40, "style": 20}


@lru_cache(maxsize=2)
def _renderings(part: str) -> Renderings:
    return render(getattr(load_split(), part))


def _labels(drawn: Renderings, kind: str) -> np.ndarray:
    return drawn.digits if kind == "digit" else drawn.styles


def _features(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.shape[1:] != (16, 16, 3):
        raise ValueError(f"expected (n, 16, 16, 3) images, got {images.shape}")
    return images.reshape(len(images), -1)


@lru_cache(maxsize=2)
def judge(kind: str) -> Pipeline:
    """The fitted judge of `kind` ("digit" or "style")."""
    if kind not in COMPONENTS:
        raise ValueError(f"kind must be one of {sorted(COMPONENTS)}, got {kind!r}")
    drawn = _renderings("judge_train")
    model = make_pipeline(PCA(COMPONENTS[kind], random_state=0), SVC(C=10.0, gamma="scale"))
    return model.fit(_features(drawn.images), _labels(drawn, kind))


def held_out_renderings() -> Renderings:
    """Every style of the judge's held-out digits: images neither the judges nor the generator saw."""
    return _renderings("judge_test")


def held_out_accuracy(kind: str) -> float:
    drawn = held_out_renderings()
    return float(judge(kind).score(_features(drawn.images), _labels(drawn, kind)))


def recognise(images: np.ndarray, kind: str) -> np.ndarray:
    """The judged digit (0..9) or style (index into STYLES) of each image ((n, 16, 16, 3) in [0, 1])."""
    return judge(kind).predict(_features(images))


def share_recognised(images: np.ndarray, kind: str, label: int) -> float:
    return float(np.mean(recognise(images, kind) == label)) if len(images) else 0.0
