"""A stop for the unlearning loop: has the version stopped drawing the concept yet?

How long a concept takes to erase depends on the concept and the seed (on the canvas model
one style needs twice the steps of another, and past its point a run takes the neighbours with
it), so a fixed step count is too short for one concept and too long for the next. The check
asks the question directly: the UNet as it is now draws the concept's held-out sentences
(`probes.py`: shapes and words training never used, seeds apart from the training's), and a
detector says in how many the concept is still there. A concept found erased leaves the batches
(`rows_left`), and comes back if later checks find it again; the run ends when none is left
(`unlearning.train.Unlearner`).

Each concept's detector is fitted on the job's own training data: the original's images of the
forget prompts that name the concept against those of every retain prompt. It reads the
decoded images (pooled to at most POOLED pixels a side), keeps their leading principal
components and classifies them with a support-vector machine. Each part was chosen on the canvas
model, against what the protocol's judges saw (benchmarks/canvas_trajectory.py; dots, seed 2):

- pixels, not latents: gradient ascent first moves the latents in directions the VAE's decoder
  barely shows. After 40 steps, a logistic regression on latents (1.00 on the original's held-out
  images) and the original as zero-shot judge (`judge.py`, by step 60) called dots gone in all
  16 images, where the protocol's pixel judge still saw dots in all of them at step 120;
- principal components and an SVM, not a logistic regression on every pixel: the latter called
  dots gone in 10 of 16 images at step 80, where the protocol still saw them in all; the former
  kept finding dots until the protocol's judge stopped seeing them (steps 180-200).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from . import sampling
from .probes import ProbeBuilder, ProbeSizes, probe_seeds
from ..latents import encode_prompts
from ..prompts import erased_matcher, model_vocabulary
from ..train import TrainingData, evaluation_mode


POOLED = 32  # pixels a side at most: enough for a style's texture, few enough for the fit
COMPONENTS = 20  # the leading principal components of the fit's images: what varies between real images
FIT_ROWS = 400  # training pairs decoded for the fit, at most, per side
# Clean checks in a row before a concept counts as erased. On the canvas model the first clean
# check on dots came while the protocol's judge still saw dots in 28% of its images (UA 0.72); a
# run that stops there erases by luck of the check's draw.
IN_A_ROW = 2


def drawn_rows(latents: torch.Tensor, limit: int) -> torch.Tensor:
    """The first `limit` rows that were drawn (rows no step reaches are NaN)."""
    return latents[~latents.flatten(1).isnan().any(dim=1)][:limit]


@torch.no_grad()
def pixel_features(pipe, latents: torch.Tensor) -> np.ndarray:
    """The decoded images' `image_features`."""
    return image_features(torch.cat([sampling.decode(pipe, latents[i:i + 64]) for i in range(0, len(latents), 64)]))


def image_features(images: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) images in [0, 1], pooled to at most POOLED pixels a side, one flat row each."""
    images = images.permute(0, 3, 1, 2)  # (N, 3, H, W)
    if images.shape[-1] > POOLED:
        images = torch.nn.functional.adaptive_avg_pool2d(images, POOLED)
    return images.flatten(1).double().numpy()


def fit_detector(concept: np.ndarray, rest: np.ndarray, seed: int):
    """Concept (1) against the rest (0), from two sets of `pixel_features` rows."""
    x = np.concatenate([concept, rest])
    y = np.concatenate([np.ones(len(concept)), np.zeros(len(rest))])
    components = min(COMPONENTS, len(x) - 1, x.shape[1])
    return make_pipeline(PCA(components, random_state=seed), SVC(C=10.0, gamma="scale")).fit(x, y)


def concept_rows(prompts: list[str], concept: str, model) -> list[int]:
    """The forget prompts that name `concept` (or a synonym); all of them when none does (a user's own)."""
    names = erased_matcher([concept], model)
    found = [i for i, prompt in enumerate(prompts) if names(prompt)]
    return found or list(range(len(prompts)))


class ErasureCheck:
    """`leaks()`: for each concept, the share of the current UNet's images of its held-out sentences
    in which its own detector finds it. Built while the UNet is still the original: `original`
    holds the same shares for the original's images of the same prompts and seeds (empty, like
    the detectors, when some concept has no drawn training image: `missing`)."""

    def __init__(self, pipe, job, data: TrainingData, forget_prompts: list[str]):
        self.pipe, config = pipe, job.config
        self.every, self.threshold = config.stop_check_every, config.stop_when_erased
        model = model_vocabulary(job.model_settings)
        synonyms = (job.prompts or {}).get("synonyms", [])
        probes = ProbeBuilder(job.concepts, job.preserve, model, synonyms, job.seed).build(
            ProbeSizes(config.stop_check_images, 0, 0, 0))[0]
        self.concepts = np.array([p.concept for p in probes], dtype=object)
        self.conditioning = encode_prompts(pipe, [p.prompt for p in probes]).to("cpu")
        self.seeds = probe_seeds(job.seed, probes)
        self.steps, self.guidance = config.generation_steps, config.guidance_scale
        self.batch = config.generation_batch_size
        drawn = ~data.forget_latents.flatten(1).isnan().any(dim=1)
        self.rows = {}
        for concept in job.concepts:
            rows = torch.tensor(concept_rows(forget_prompts, concept, model))
            self.rows[concept] = rows[drawn[rows]]  # the rows a step may draw
        # A short run draws only the rows its steps reach: a concept may have none to fit on.
        self.missing = [concept for concept, rows in self.rows.items() if len(rows) == 0]
        self.detectors, self.original = {}, {}
        if self.missing:
            return
        rest = pixel_features(pipe, drawn_rows(data.retain_latents, FIT_ROWS))
        for concept, rows in self.rows.items():
            latents = data.forget_latents[rows[:FIT_ROWS]]
            self.detectors[concept] = fit_detector(pixel_features(pipe, latents), rest, job.seed)
        self.original = self.leaks()

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def leaks(self) -> dict[str, float]:
        with evaluation_mode(self.pipe.unet):
            drawn = sampling.draw(self.pipe, self.conditioning, self.seeds, self.steps, self.guidance, self.batch)
        found = {}
        for concept, detector in self.detectors.items():
            mine = self.concepts == concept
            found[concept] = float(np.mean(detector.predict(pixel_features(self.pipe, drawn[mine])) == 1))
        return found

    def rows_left(self, history: list[dict]) -> torch.Tensor | None:
        """The forget rows of the concepts not yet erased (`erased_concepts`), ascending; None while
        no concept is erased (every row), empty once all are."""
        erased = erased_concepts(history, self.threshold)
        if not erased:
            return None
        left = [rows for concept, rows in self.rows.items() if concept not in erased]
        return torch.cat(left).unique() if left else torch.empty(0, dtype=torch.long)


def erased_concepts(history: list[dict], threshold: float) -> set[str]:
    """The concepts that the last IN_A_ROW checks in a run's `history` each found at or under the
    threshold. (Read from the history, so a resumed run goes on as an uninterrupted one does.)"""
    last = [r["erasure_check"] for r in history if "erasure_check" in r][-IN_A_ROW:]
    if len(last) < IN_A_ROW:
        return set()
    return {concept for concept in last[-1] if all(leaks[concept] <= threshold for leaks in last)}
