"""`erase`: one whole erasure, from a base pipeline folder to a result folder.

Stages (each reported through the callbacks): preparing (prompt sets, the original model's
latents, their conditioning), unlearning (the steps), evaluating (held-out losses and sample
grids, before and after), auditing (leaks, a soft-prompt attack, neighbours and collapse,
judged by the original model: `unlearning.audit`), writing (the result folder, published by
one rename). Each counts its own steps (preparing: three set-up steps, then the latents, a share
after each sampler step; evaluating: four per measure); and whatever runs the UNet repeats the
last progress once it is a second old (`callbacks.Heartbeat`), so that no stage goes quiet.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import lora, methods
from .audit import DEFAULT_AUDIT
from .audit.run import check_before_training, run_audit
from .audit.stop import ErasureCheck
from .callbacks import Callbacks, Heartbeat, Steps
from .errors import Stopped
from .evaluate import Evaluation
from .fingerprint import model_fingerprint
from .job import Job, manifest_of, prepare_job
from .families import image_size
from .latents import LatentCache, encode_prompts, encode_unconditional, generate_latents, sample_seeds
from .noise import TrainingNoise
from .output import write_result
from .pipeline import load_pipeline
from .prompts import PromptSets, build_prompt_sets, model_vocabulary
from .train import TrainingData, Unlearner, batch_indices, parent_weights

STATE_FILE = "state.pt"


@dataclass
class EraseResult:
    out: Path
    manifest: dict
    metrics: dict
    history: list[dict] = field(repr=False, default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    audit: dict = field(default_factory=dict)  # the audit's report (unlearning.audit), also in metrics.json


def erase(
    base, concepts, out, *, method: str = methods.DEFAULT_METHOD, preserve=(), prompts: dict | None = None,
    hyperparameters: dict | None = None, seed: int = 0, cache_dir=None, state_dir=None,
    callbacks: Callbacks | None = None, lineage: dict | None = None, device=None, allow_pickle: bool = False,
    audit: str = DEFAULT_AUDIT, erased=(),
) -> EraseResult:
    """Erase `concepts` from the pipeline at `base`; write the result folder at `out`.

    `base` is a diffusers folder of a family in `unlearning.families` (SD 1.x/2.x, SDXL), with
    safetensors weights (fp16 variants are upcast). `allow_pickle` also loads pickle weights
    (.bin, .ckpt, .pt), which run code when loaded: only for a folder you trust. `audit` ("quick",
    "full" or "off") sizes the audit whose report goes into the evaluation's metrics. `erased`: the
    concepts `base` has already erased (its lineage), kept out of every retain prompt.
    """
    job = prepare_job(base, concepts, out, method, preserve, prompts, hyperparameters, seed, allow_pickle, audit)
    heartbeat = Heartbeat(callbacks or Callbacks())  # no stage silent for long: see Heartbeat
    callbacks = heartbeat.callbacks
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    setup = Steps(callbacks, "preparing", 3)  # then the latents, counted by themselves
    setup.start()
    pipe = load_pipeline(job.base, device, allow_pickle)
    heartbeat.attach(pipe.unet)
    noise = TrainingNoise(pipe.scheduler.config)  # refuses a prediction type it cannot train, before any work
    config = job.config
    lora.check(pipe.unet, config)  # LoRA targets this UNet lacks, also before any work
    setup.advance()
    checked = check_before_training(pipe, noise, job, callbacks)  # a warning at once if it does not draw it
    setup.advance()
    sets = build_prompt_sets(job.concepts, config.num_prompts, job.seed, job.preserve, job.prompts,
                             model_vocabulary(job.model_settings), num_test=config.eval_prompts, erased=erased)
    examples = {"examples": list(zip(sets.forget[:3], sets.retain[:3]))}
    callbacks.on_event("message", f"{len(sets.forget)} forget and {len(sets.retain)} retain prompts", examples)
    fingerprint = model_fingerprint(job.base, Path(cache_dir) / "fingerprints.json" if cache_dir is not None else None)
    setup.advance()
    data, test = make_training_data(pipe, sets, job, fingerprint, cache_dir, callbacks)
    seconds["preparing"] = time.perf_counter() - clock

    clock = time.perf_counter()
    evaluation = Evaluation(pipe, noise, test, job.seed, config.generation_steps, config.guidance_scale)
    evaluating = Steps(callbacks, "evaluating", 2 * Evaluation.STEPS)
    evaluating.start()
    evaluation.measure("before", evaluating.advance)
    # Only these tensors can change: the parent's values of those are what the delta needs.
    original = parent_weights(pipe.unet, config)
    seconds["evaluating"] = time.perf_counter() - clock

    clock = time.perf_counter()
    state_file = Path(state_dir) / STATE_FILE if state_dir is not None else None
    check = erasure_check(pipe, job, data, sets.forget, callbacks)
    unlearner = Unlearner(pipe.unet, noise, config, data, job.seed, pipe.device)
    # Then it releases its gradients and state.
    history = unlearner.run(callbacks, state_file, job.run_key(fingerprint), check)
    del check
    del unlearner, data  # the evaluation and write_result need neither
    seconds["unlearning"] = time.perf_counter() - clock

    clock = time.perf_counter()
    evaluating.report()
    evaluation.measure("after", evaluating.advance)
    seconds["evaluating"] += time.perf_counter() - clock

    clock = time.perf_counter()
    audit_report = run_audit(pipe, noise, job, original, test["forget"][0], callbacks, checked)
    seconds["auditing"] = time.perf_counter() - clock

    clock = time.perf_counter()
    callbacks.on_progress("writing", 0, 1)
    manifest = manifest_of(job, lineage)
    with tempfile.TemporaryDirectory() as scratch:
        eval_dir = evaluation.write(Path(scratch) / "evaluation", {"final": history[-1] if history else {}, "audit": audit_report})
        adapter = lora.take_adapter(pipe, config)  # a LoRA run's adapter, now fused into the UNet; else None
        manifest = write_result(job.base, job.out, pipe.unet, original, manifest, eval_dir, adapter)
    if state_file is not None and state_file.exists():
        state_file.unlink()
    seconds["writing"] = time.perf_counter() - clock
    callbacks.on_progress("writing", 1, 1)
    return EraseResult(job.out, manifest, evaluation.metrics, history, seconds, audit_report)


def erasure_check(pipe, job: Job, data: TrainingData, forget_prompts: list[str],
                  callbacks: Callbacks) -> ErasureCheck | None:
    """The check behind `stop_when_erased` (None when unset), built while the UNet is the original.
    If the original's own images of the check's sentences do not show the concepts to its detector
    (at most half of them, for some concept), the check could not tell erased from kept: a warning,
    and every step runs."""
    if job.config.stop_when_erased is None:
        return None
    check = ErasureCheck(pipe, job, data, forget_prompts)
    if check.missing:
        callbacks.on_event("warning", f"stop_when_erased is ignored: these steps reach no training image of "
                           f"{', '.join(check.missing)} to fit the erasure check on; every step runs",
                           {"missing": check.missing})
        return None
    shares = ", ".join(f"{c} {share:.0%}" for c, share in check.original.items())
    if min(check.original.values()) <= 0.5:
        callbacks.on_event("warning", f"stop_when_erased is ignored: the erasure check's detector finds the concept "
                           f"in too few of the original's own images ({shares}); every step runs",
                           {"original": check.original})
        return None
    callbacks.on_event("message", f"erasure check every {check.every} steps; the original's images show the "
                       f"concept to its detector: {shares}",
                       {"erasure_check_every": check.every, "original": check.original})
    return check


def make_training_data(pipe, sets: PromptSets, job: Job, fingerprint: str, cache_dir, callbacks: Callbacks):
    """Latents (cached by the base's `fingerprint`) and conditioning for the training pairs and the held-out prompts."""
    config = job.config
    # One file per batch of the stream (latents.py); "latents/" held the older one-per-latent files.
    cache = LatentCache(Path(cache_dir) / "latent-batches" if cache_dir is not None else None)
    settings = {
        "steps": config.generation_steps,
        "guidance_scale": config.guidance_scale,
        "height": image_size(pipe),
        "width": image_size(pipe),
        "scheduler": pipe.scheduler.config["_class_name"],
    }
    groups = {"forget": sets.forget, "retain": sets.retain, "test_forget": sets.test_forget, "test_retain": sets.test_retain}
    if not config.draws_retain_set:
        groups["retain"] = []  # never used: don't spend the sampler on it
    # Only the pairs the steps will reach are drawn (all of them once the steps make a whole pass);
    # each keeps the seed it has in the whole set. The rest stay NaN: no step reads them.
    pairs = rows_used(job.seed, config.steps, config.batch_size, len(sets.forget))
    drawn_rows = {"forget": pairs, "retain": pairs if groups["retain"] else [],
                  "test_forget": range(len(sets.test_forget)), "test_retain": range(len(sets.test_retain))}
    # One stream over every group, so the sampler's batches are full; split afterwards.
    prompts = [group[i] for name, group in groups.items() for i in drawn_rows[name]]
    seeds = [s for name, group in groups.items() for s in pick(sample_seeds(job.seed, group), drawn_rows[name])]
    drawing: list[int] = []

    def progress(done: int, total: int) -> None:
        if not drawing:  # the first call: `done` came from the cache (how much a job drew: workers/throughput.py)
            drawing.append(total - done)
            callbacks.on_event("message", f"{done} of {total} latents from the cache, {total - done} to draw",
                               {"latents_cached": done, "latents_drawn": total - done})
        callbacks.on_progress("preparing", done, total)
        if done < total and callbacks.should_stop():  # generation is long: a cancel may come now
            raise Stopped(0)

    all_latents = generate_latents(pipe, prompts, seeds, settings, cache, fingerprint, config.generation_batch_size, progress)
    all_conditioning = encode_prompts(pipe, [p for group in groups.values() for p in group])
    latents, conditioning, start, drawn_start = {}, {}, 0, 0
    for name, group in groups.items():
        count = len(drawn_rows[name])
        latents[name] = in_rows(all_latents[drawn_start:drawn_start + count], drawn_rows[name], len(group))
        conditioning[name] = all_conditioning[start:start + len(group)]
        start, drawn_start = start + len(group), drawn_start + count
    data = TrainingData(latents["forget"], conditioning["forget"], latents["retain"], conditioning["retain"],
                        encode_unconditional(pipe))
    test = {
        "forget": (latents["test_forget"], conditioning["test_forget"], sets.test_forget),
        "retain": (latents["test_retain"], conditioning["test_retain"], sets.test_retain),
    }
    return data, test


def rows_used(seed: int, steps: int, batch_size: int, size: int) -> list[int]:
    """The training rows (ascending) that `steps` steps of `batch_indices` touch: every row once the
    steps make a whole pass, else the first pass's first steps * batch_size."""
    positions = steps * batch_size
    if positions >= size:
        return list(range(size))
    return sorted(batch_indices(seed, 0, positions, size).tolist())


def pick(values: list, rows) -> list:
    return [values[i] for i in rows]


def in_rows(drawn: torch.Tensor, rows, size: int) -> torch.Tensor:
    """(size, ...) with `drawn` in `rows` and NaN elsewhere (a read of an undrawn row is loud)."""
    if len(rows) == size:
        return drawn
    full = torch.full((size, *drawn.shape[1:]), float("nan"), dtype=drawn.dtype)
    full[list(rows)] = drawn
    return full
