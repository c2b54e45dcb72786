"""The audit on tiny real pipelines: its prompts, the option, the original put back exactly,
and a concept the model does not draw (a random tiny model draws none) warned about, not crashed on."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import unlearning
from unlearning import lora
from unlearning.audit import SETTINGS
from unlearning.audit.probes import ProbeBuilder, ProbeSizes, spelling_variants
from unlearning.audit.run import Auditor, original_in_place
from unlearning.job import prepare_job
from unlearning.methods import make_config
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline
from unlearning.prompts import ModelVocabulary, build_prompt_sets

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
TINY = {"steps": 2, "num_prompts": 4, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
        "eval_prompts": 2, "learning_rate": 1e-3}
DIGITS = ModelVocabulary(
    templates=["a handwritten digit {concept}", "the number {concept}"],
    test_templates=["a picture of a handwritten digit {concept}", "number {concept} drawn by hand"],
    classes="zero one two three four five six seven eight nine".split(),
    synonyms={"seven": ["7"]},
)
SIZES = ProbeSizes(references=8, repeats=1, neighbours=9, per_neighbour=1)


def test_forget_probes_ask_for_the_concept_in_ways_training_never_used():
    forget, _ = ProbeBuilder(["seven"], [], DIGITS, [], seed=0).build(SIZES)
    training = set(build_prompt_sets(["seven"], 500, seed=0, model=DIGITS).forget)
    assert not {p.prompt for p in forget} & training
    asked = {(p.kind, p.asks) for p in forget}
    assert {("numeral", "7"), ("case", "SEVEN"), ("misspelling", "sevn"), ("alone", "seven")} <= asked
    assert sum(p.kind == "held_out" for p in forget) == 8 and all(p.label == 0 for p in forget)
    for p in forget:
        assert "seven" in p.candidates[0] and "seven" not in " ".join(p.candidates[1:])


def test_neighbour_probes_are_the_sibling_classes_each_judged_against_all():
    _, kept = ProbeBuilder(["seven"], [], DIGITS, [], seed=0).build(SIZES)
    assert sorted(p.asks for p in kept) == sorted(c for c in DIGITS.classes if c != "seven")
    for p in kept:
        assert len(p.candidates) == 11 and p.candidates[p.label] == p.prompt and "seven" in p.candidates[0]


def test_without_classes_the_neighbours_are_the_preserved_concepts_or_the_sentence_without_it():
    _, kept = ProbeBuilder(["van gogh"], ["claude monet"], ModelVocabulary(), [], seed=0).build(SIZES)
    assert {p.asks for p in kept} == {"claude monet"} and all("claude monet" in p.prompt for p in kept)
    _, kept = ProbeBuilder(["van gogh"], [], ModelVocabulary(), [], seed=0).build(SIZES)
    assert {p.label for p in kept} == {1} and not any("van gogh" in p.prompt for p in kept)
    assert spelling_variants("van gogh") == ["van goh", "van ggoh"] and spelling_variants("cat") == []


def test_a_bad_audit_mode_is_refused_before_anything_is_written(tiny_base, tmp_path):
    with pytest.raises(unlearning.InvalidInput) as error:
        unlearning.erase(tiny_base, ["van gogh"], tmp_path / "out", audit="thorough")
    assert error.value.field == "audit"
    assert list(tmp_path.iterdir()) == []


def changed(unet) -> dict[str, torch.Tensor]:
    """Every parameter moved, as a run would."""
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01)
    return {n: p.detach().clone() for n, p in unet.named_parameters()}


def test_inside_the_audit_the_unet_is_the_original_and_after_it_the_version_again(tiny_base):
    pipe = load_pipeline(tiny_base, "cpu")
    original = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    version = changed(pipe.unet)
    with original_in_place(pipe.unet, original):
        assert all(torch.equal(p, original[n]) for n, p in pipe.unet.named_parameters())
    assert all(torch.equal(p, version[n]) for n, p in pipe.unet.named_parameters())


def test_with_a_lora_adapter_the_original_is_the_unet_with_the_adapter_off(tiny_base):
    pipe = load_pipeline(tiny_base, "cpu")
    sample, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    states = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    base = pipe.unet(sample, t, states).sample
    lora.attach(pipe.unet, make_config("rg", {"trainable": "lora"}), seed=0)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if ".lora_B." in name:
                p.fill_(0.05)
    adapted = pipe.unet(sample, t, states).sample
    assert not torch.allclose(adapted, base)
    with original_in_place(pipe.unet, {}):
        assert torch.equal(pipe.unet(sample, t, states).sample, base)
    assert torch.equal(pipe.unet(sample, t, states).sample, adapted)


def test_a_concept_the_model_does_not_draw_is_a_warning_and_the_version_is_still_written(tiny_base, latent_cache, tmp_path):
    events, order = [], []  # order: event kinds and progress stages as they came
    callbacks = unlearning.Callbacks(on_event=lambda kind, message, data: (events.append((kind, message, data)),
                                                                         order.append(kind)),
                                     on_progress=lambda stage, step, total: order.append(stage))
    quick = unlearning.erase(tiny_base, ["van gogh"], tmp_path / "quick", hyperparameters=TINY, cache_dir=latent_cache,
                             callbacks=callbacks)
    warnings = [message for kind, message, _ in events if kind == "warning"]
    assert len(warnings) == 1 and "does not seem to draw 'van gogh'" in warnings[0]
    assert order.index("warning") < order.index("unlearning")  # checked before training, not after it
    written = json.loads((quick.out / "evaluation" / "metrics.json").read_text())["audit"]
    assert written["status"] == "not_applicable" and written["warning"] == warnings[0]
    assert written["concept_margin"] <= 2.5 * max(written["control_margin"], 0) or written["concept_drawn"] < 0.8
    assert json.loads((quick.out / "manifest.json").read_text())["audit"] == "quick"
    off = unlearning.erase(tiny_base, ["van gogh"], tmp_path / "off", hyperparameters=TINY, cache_dir=latent_cache, audit="off")
    assert off.audit == {"mode": "off"} and off.manifest["audit"] == "off"
    for name in (UNET_FILE, "delta.safetensors"):  # the audit put the trained weights back exactly
        assert (quick.out / name).read_bytes() == (off.out / name).read_bytes()
    assert load_file(quick.out / "delta.safetensors")


def test_the_cli_takes_the_audit_mode_and_prints_the_warning(tiny_base, latent_cache, tmp_path):
    settings = [f"--set={k}={v}" for k, v in TINY.items()]
    command = [sys.executable, "-m", "unlearning", "erase", "--base", str(tiny_base), "--concept", "van gogh",
               "--cache-dir", str(latent_cache), *settings]
    proc = subprocess.run([*command, "--out", str(tmp_path / "a"), "--audit", "quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "audit skipped: the original model does not seem to draw 'van gogh'" in proc.stdout
    proc = subprocess.run([*command, "--out", str(tmp_path / "b"), "--audit", "everything"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--audit" in proc.stderr and not (tmp_path / "b").exists()


@pytest.mark.parametrize("base", ["tiny_base", "sd2_base", "sdxl_base"])
def test_the_attack_learns_draws_and_is_judged_on_every_family(base, request, tmp_path):
    """SD 2.x regresses on the velocity; SDXL's learned prompt keeps its pooled embedding and time ids."""
    folder = request.getfixturevalue(base)
    pipe = load_pipeline(folder, "cpu")
    job = prepare_job(folder, ["van gogh"], tmp_path / "out", "rg", [], None, TINY, 0)
    settings = dataclasses.replace(SETTINGS["quick"], attack_steps=3, attack_images=2, judge_timesteps=2)
    auditor = Auditor(pipe, TrainingNoise(pipe.scheduler.config), job, settings, lambda: None)
    references = auditor.probes[:2]
    latents = auditor.draw(references)
    learned, losses = auditor.soft_prompt(latents)
    assert len(losses) == 3 and all(map(torch.isfinite, map(torch.tensor, losses)))
    assert set(learned.added) == ({"text_embeds", "time_ids"} if base == "sdxl_base" else set())
    attacked = auditor.draw([], learned)
    verdicts = auditor.judge_attack(attacked)
    assert attacked.shape == (2, *latents.shape[1:]) and verdicts.errors.shape == (2, len(auditor.attack_probe.candidates))
    assert torch.isfinite(verdicts.errors).all()
