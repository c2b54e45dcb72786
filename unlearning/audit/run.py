"""The auditing stage: draw with the original and the version, attack the version, judge it all.

The original model is needed after training, as the reference that draws and as the judge;
the run keeps only the parent's values of the tensors it changed (`original`), so those are put
back into the UNet for these parts and the version's own taken back after (`original_in_place`),
exactly: the version that is written is the one that was trained.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

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

STEPS = 5  # progress: original drawn and judged, version drawn, attacked, judged, reported


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
              callbacks: Callbacks) -> dict:
    """The audit's report (job.audit "quick" or "full"); {"mode": "off"} when switched off.
    `original`: the parent's values of the tensors the run changed; `references`: the
    original's latents of the concept that the evaluation already has (or None)."""
    if job.audit == "off":
        return {"mode": "off"}
    auditor = Auditor(pipe, noise, job, SETTINGS[job.audit], lambda: original_in_place(pipe.unet, original))
    return auditor.run(references, callbacks)


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
        self.control_word = made_up_word(job.seed, max(len(w) for c in job.concepts for w in c.split()))
        self.controls = controls([p for p in self.forget if p.kind == "held_out"], self.control_word)
        self.attack_probe = self.forget[0]  # a held-out sentence: the attack starts from it without the concept

    def run(self, references: torch.Tensor | None, callbacks: Callbacks) -> dict:
        started = time.perf_counter()
        step = self._progress(callbacks)
        probes, split = self.forget + self.kept, len(self.forget)
        first = sum(p.kind == "held_out" for p in probes)  # the references come first
        with self.as_original():
            # One sampler run for all (its fixed cost dominates on small models); the references
            # and their controls are judged first, as that is all there is to do when the check fails.
            drawn = self.draw(probes + self.controls)
            before, judged_before = drawn[:len(probes)], self.judge_probes(drawn[:first], probes[:first])
            check = drawing_check(judged_before, self.judge_probes(drawn[len(probes):], self.controls), self.control_word)
            if not check["drawn"]:
                message, data = not_drawn(self.job.concepts, check, self.forget)
                callbacks.on_event("warning", message, data)
                return {"mode": self.job.audit, **data, "seconds": time.perf_counter() - started}
            floor = calibrated_floor(judged_before)
            judged_before = Verdicts.concatenate([judged_before, self.judge_probes(before[first:], probes[first:])])
            judged_before = judged_before.with_floor(floor)
            targets, threshold = self.targets(before[:first], judged_before[:first], references)
            control = self.judge_attack(self.draw([], self.soft_prompt(targets)[0])) if self.settings.attack_control else None
        step(1)
        learned, losses = self.soft_prompt(targets)
        step(2)
        drawn = self.draw(probes, learned)
        after, attacked = drawn[:len(probes)], drawn[len(probes):]
        step(3)
        with self.as_original():
            judged_after, judged_attack = self.judge_probes(after, probes), self.judge_attack(attacked)
        judged_after, judged_attack = judged_after.with_floor(floor), judged_attack.with_floor(floor)
        control = control.with_floor(floor) if control is not None else None
        step(4)
        result = report(
            self.job.audit, self.settings, self.forget, self.kept,
            before={"forget": before[:split], "kept": before[split:]}, after={"forget": after[:split], "kept": after[split:]},
            judged={"forget_before": judged_before[:split], "kept_before": judged_before[split:],
                    "forget_after": judged_after[:split], "kept_after": judged_after[split:],
                    "attack": judged_attack, **({"attack_original": control} if control is not None else {})},
            threshold=threshold, losses=losses, check={**check, "concept_floor": floor},
            neutral_prompt=self.attack_probe.candidates[1],
        )  # fmt: skip
        result["seconds"] = time.perf_counter() - started
        step(5)
        callbacks.on_event("metrics", summary(result), {k: v for k, v in result.items() if isinstance(v, float)})
        return result

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
        """The original's own images of the concept (the held-out references the judge
        recognises, and the evaluation's), and the worst judge error among the recognised
        references: what 'real-looking' allows."""
        recognised = verdicts.concept
        threshold = float(verdicts.best_error[recognised].max())
        extra = [references] if references is not None and len(references) else []
        return torch.cat([latents[recognised], *extra]), threshold

    def soft_prompt(self, targets: torch.Tensor) -> tuple[Conditioning, list[float]]:
        """A soft prompt learned on the UNet as it is now, from the attack sentence without the concept."""
        s = self.settings
        neutral = encode_prompts(self.pipe, [self.attack_probe.candidates[1]])
        return soft_prompt(self.pipe, self.noise, neutral, targets, steps=s.attack_steps, tokens=s.attack_tokens,
                           learning_rate=s.attack_learning_rate, batch_size=s.attack_batch, seed=self.job.seed)


def references(settings: AuditSettings, eval_prompts: int) -> int:
    """Held-out images of each concept: the mode's number at the default 8 evaluation prompts,
    scaled with them (a job that asks for a small evaluation gets a small audit), at least 4."""
    return max(4, min(settings.references, settings.references * eval_prompts // 8))


def summary(result: dict) -> str:
    return (f"audit ({result['mode']}): leak {result['leak_rate']:.2f} (original {result['leak_rate_original']:.2f}), "
            f"soft-prompt attack {result['attack_success']:.2f}, neighbours kept {result['neighbour_accuracy']:.2f} "
            f"(original {result['neighbour_accuracy_original']:.2f}), spread x{result['spread_ratio']:.2f}")
