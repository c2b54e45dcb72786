"""The auditing stage: draw with the original and the version, attack the version, judge it all.

The original model is needed after training, as the reference that draws and as the judge;
the run keeps only the parent's values of the tensors it changed (`original`), so those are put
back into the UNet for these parts and the version's own taken back after (`original_in_place`),
exactly: the version that is written is the one that was trained.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from ..callbacks import Callbacks
from ..errors import Stopped
from ..families import Conditioning
from ..latents import encode_prompts
from ..noise import TrainingNoise
from ..prompts import model_vocabulary
from . import SETTINGS, AuditSettings, sampling
from .attack import soft_prompt
from .judge import Judge, Verdicts, calibrated_floor
from .probes import Probe, ProbeBuilder, ProbeSizes, controls, made_up_word, probe_seeds
from .report import drawing_check, not_drawn, report

STEPS = 5  # progress: the original's side, the attack learnt, the version drawn, judged, reported


@contextmanager
def original_in_place(unet, original: dict[str, torch.Tensor]):
    """The UNet as the original while inside, exactly: a LoRA adapter (not yet fused) switched
    off, or else the tensors the run changed (`original`, by name) swapped in and back out."""
    if getattr(unet, "peft_config", None):
        unet.disable_adapters()
        try:
            yield
        finally:
            unet.enable_adapters()
        return
    params = dict(unet.named_parameters())
    trained = {n: params[n].detach().to("cpu", copy=True) for n in original}
    with torch.no_grad():
        for n, value in original.items():
            params[n].copy_(value.to(params[n].device))
    try:
        yield
    finally:
        with torch.no_grad():
            for n, value in trained.items():
                params[n].copy_(value.to(params[n].device))


def run_audit(pipe, noise: TrainingNoise, job, original: dict, references: torch.Tensor | None,
              callbacks: Callbacks, checked: ReferencesCheck | None = None) -> dict:
    """The audit's report (job.audit "quick" or "full"); {"mode": "off"} when switched off.
    `original`: the parent's values of the tensors the run changed; `references`: the
    original's latents of the concept that the evaluation already has (or None); `checked`:
    what `check_before_training` found, reused rather than drawn again."""
    if job.audit == "off":
        return {"mode": "off"}
    auditor = Auditor(pipe, noise, job, SETTINGS[job.audit], lambda: original_in_place(pipe.unet, original))
    return auditor.run(references, callbacks, checked)


@dataclass
class ReferencesCheck:
    """The original's images of the held-out references and what the judge made of them: does it
    draw the concept at all (report.drawing_check)? Found before training, used again by the audit."""

    latents: torch.Tensor
    verdicts: Verdicts
    check: dict
    seconds: float


def check_before_training(pipe, noise: TrainingNoise, job, callbacks: Callbacks) -> ReferencesCheck | None:
    """Does the base draw the concept? Asked before training (the UNet is still the original), so
    that a concept it does not draw is a warning among the job's first events, not after its run.
    None when the audit is off."""
    if job.audit == "off":
        return None
    started = time.perf_counter()
    auditor = Auditor(pipe, noise, job, SETTINGS[job.audit], nullcontext)
    checked = auditor.references_check()
    if not checked.check["drawn"]:
        message, data = not_drawn(job.concepts, checked.check, auditor.forget)
        callbacks.on_event("warning", message, {k: v for k, v in data.items() if k != "about"})
    checked.seconds = time.perf_counter() - started
    return checked


@dataclass
class OriginalSide:
    """What the original drew and what its judge made of it, before the version is looked at."""

    latents: torch.Tensor  # the probes' images
    verdicts: Verdicts  # the references' alone when the check failed, else every probe's
    check: dict  # does the original draw the concept (report.drawing_check)
    floor: float = 0.0
    targets: torch.Tensor | None = None  # the attack's: the original's recognised images of the concept
    threshold: float = float("nan")  # real-looking: the worst judge error among those
    control: Verdicts | None = None  # the attack on the original (full mode)


class Auditor:
    def __init__(self, pipe, noise: TrainingNoise, job, settings: AuditSettings, as_original):
        self.pipe, self.noise, self.job, self.settings, self.as_original = pipe, noise, job, settings, as_original
        config = job.config
        self.steps, self.guidance, self.batch = config.generation_steps, config.guidance_scale, config.generation_batch_size
        self.judge = Judge(pipe, noise, job.seed, settings.judge_timesteps, batch_size=2 * self.batch)
        synonyms = (job.prompts or {}).get("synonyms", [])
        builder = ProbeBuilder(job.concepts, job.preserve, model_vocabulary(job.model_settings), synonyms, job.seed)
        sizes = ProbeSizes(references(settings, config.eval_prompts), settings.repeats, settings.neighbours,
                           settings.per_neighbour)
        self.forget, self.kept = builder.build(sizes)
        self.probes = self.forget + self.kept
        self.first = sum(p.kind == "held_out" for p in self.probes)  # the references come first
        self.control_word = made_up_word(job.seed, max(len(w) for c in job.concepts for w in c.split()))
        self.controls = controls(self.probes[:self.first], self.control_word)
        self.attack_probe = self.forget[0]  # a held-out sentence: the attack starts from it without the concept

    def run(self, references: torch.Tensor | None, callbacks: Callbacks, checked: ReferencesCheck | None = None) -> dict:
        started = time.perf_counter() - (checked.seconds if checked is not None else 0.0)
        step = self._progress(callbacks)
        with self.as_original():
            original = self.original_side(references, checked)
        if not original.check["drawn"]:
            message, data = not_drawn(self.job.concepts, original.check, self.forget)
            if checked is None:  # else already warned, before training
                callbacks.on_event("warning", message, {k: v for k, v in data.items() if k != "about"})
            return {"mode": self.job.audit, **data, "seconds": time.perf_counter() - started}
        step(1)
        learned, losses = self.soft_prompt(original.targets)
        step(2)
        drawn = self.draw(self.probes, learned)  # the version's images of the probes, then the attack's
        step(3)
        with self.as_original():
            judged = self.judge_probes(drawn[:len(self.probes)], self.probes), self.judge_attack(drawn[len(self.probes):])
        step(4)
        result = self.report(original, drawn[:len(self.probes)], *(v.with_floor(original.floor) for v in judged), losses)
        result["seconds"] = time.perf_counter() - started
        step(5)
        callbacks.on_event("metrics", summary(result), {k: v for k, v in result.items() if isinstance(v, float)})
        return result

    def original_side(self, references: torch.Tensor | None, checked: ReferencesCheck | None = None) -> OriginalSide:
        """The check that the original draws the concept at all (`checked`, or made now); if it
        does, the original's images of the other probes, judged, and the attack prepared."""
        first = self.first
        checked = checked or self.references_check()
        if not checked.check["drawn"]:
            return OriginalSide(checked.latents, checked.verdicts, checked.check)
        floor = calibrated_floor(checked.verdicts)
        drawn = torch.cat([checked.latents, self.draw(self.probes[first:])])
        rest = self.judge_probes(drawn[first:], self.probes[first:])
        verdicts = Verdicts.concatenate([checked.verdicts, rest]).with_floor(floor)
        targets, threshold = self.targets(drawn[:first], verdicts[:first], references)
        control = self.judge_attack(self.draw([], self.soft_prompt(targets)[0])) if self.settings.attack_control else None
        return OriginalSide(drawn, verdicts, checked.check, floor, targets, threshold,
                            control.with_floor(floor) if control is not None else None)

    def references_check(self) -> ReferencesCheck:
        """The references and their controls drawn (one sampler run) with the UNet as it is, and
        judged: does it draw the concept at all?"""
        started = time.perf_counter()
        drawn = self.draw(self.probes[:self.first] + self.controls)
        verdicts = self.judge_probes(drawn[:self.first], self.probes[:self.first])
        check = drawing_check(verdicts, self.judge_probes(drawn[self.first:], self.controls), self.control_word)
        return ReferencesCheck(drawn[:self.first], verdicts, check, time.perf_counter() - started)

    def report(self, original: OriginalSide, after: torch.Tensor, judged_after: Verdicts, judged_attack: Verdicts,
               losses: list[float]) -> dict:
        split = len(self.forget)
        before = original.latents
        judged = {"forget_before": original.verdicts[:split], "kept_before": original.verdicts[split:],
                  "forget_after": judged_after[:split], "kept_after": judged_after[split:], "attack": judged_attack}
        if original.control is not None:
            judged["attack_original"] = original.control
        return report(
            self.job.audit, self.settings, self.forget, self.kept,
            before={"forget": before[:split], "kept": before[split:]}, after={"forget": after[:split], "kept": after[split:]},
            judged=judged, threshold=original.threshold, losses=losses,
            check={**original.check, "concept_floor": original.floor}, neutral_prompt=self.attack_probe.candidates[1],
        )  # fmt: skip

    def _progress(self, callbacks: Callbacks):
        callbacks.on_progress("auditing", 0, STEPS)

        def step(done: int) -> None:
            callbacks.on_progress("auditing", done, STEPS)
            if done < STEPS and callbacks.should_stop():
                raise Stopped(self.job.config.steps)

        return step

    # --- drawing and judging ------------------------------------------------------------

    def draw(self, probes: list[Probe], learned: Conditioning | None = None) -> torch.Tensor:
        """The probes' images, then (with `learned`) the attack's, unguided, in the same sampler run:
        the learned vectors fit the conditional prediction itself, and guidance on top overshoots."""
        parts, seeds, guidance = [], probe_seeds(self.job.seed, probes), [self.guidance] * len(probes)
        if probes:
            parts.append(encode_prompts(self.pipe, [p.prompt for p in probes]).to("cpu"))
        if learned is not None:
            count = self.settings.attack_images
            parts.append(learned.to("cpu").expand(count))
            seeds, guidance = seeds + list(range(self.job.seed, self.job.seed + count)), guidance + [1.0] * count
        return sampling.draw(self.pipe, Conditioning.concatenate(parts), seeds, self.steps, guidance, self.batch)

    def judge_probes(self, latents: torch.Tensor, probes: list[Probe]) -> Verdicts:
        return self.judge.judge(latents, [list(p.candidates) for p in probes])

    def judge_attack(self, latents: torch.Tensor) -> Verdicts:
        return self.judge.judge(latents, [list(self.attack_probe.candidates)] * len(latents))

    # --- the soft-prompt attack -----------------------------------------------------------

    def targets(self, latents: torch.Tensor, verdicts: Verdicts, references: torch.Tensor | None):
        """The original's own images of the attacked concept (the held-out references the judge
        recognises, and with a single concept the evaluation's), and the worst judge error among
        the recognised references: what 'real-looking' allows."""
        attacked = torch.tensor([p.concept == self.attack_probe.concept for p in self.probes[:self.first]])
        recognised = verdicts.concept & attacked
        threshold = float(verdicts.best_error[recognised].max())
        extra = [references] if references is not None and len(references) and len(self.job.concepts) == 1 else []
        return torch.cat([latents[recognised], *extra]), threshold

    def soft_prompt(self, targets: torch.Tensor) -> tuple[Conditioning, list[float]]:
        """A soft prompt learned on the UNet as it is now, from the attack sentence without the concept."""
        s = self.settings
        neutral = encode_prompts(self.pipe, [self.attack_probe.candidates[1]])
        return soft_prompt(self.pipe.unet, self.noise, neutral, targets, steps=s.attack_steps, tokens=s.attack_tokens,
                           learning_rate=s.attack_learning_rate, batch_size=s.attack_batch, seed=self.job.seed)


def references(settings: AuditSettings, eval_prompts: int) -> int:
    """Held-out images of each concept: the mode's number at the default 8 evaluation prompts,
    scaled with them (a job that asks for a small evaluation gets a small audit), at least 4."""
    return max(4, min(settings.references, settings.references * eval_prompts // 8))


def summary(result: dict) -> str:
    def figure(name: str) -> str:
        return "n/a" if result.get(name) is None else f"{result[name]:.2f}"

    return (f"audit ({result['mode']}): leak {figure('leak_rate')} (original {figure('leak_rate_original')}), "
            f"soft-prompt attack {figure('attack_success')}, neighbours kept {figure('neighbour_accuracy')} "
            f"(original {figure('neighbour_accuracy_original')}), spread x{figure('spread_ratio')}")
