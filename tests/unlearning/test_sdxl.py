"""SDXL through the same loader, prompt sets, latents, loop, evaluation and output as SD 1.x:
its conditioning is what the pipeline itself gives its UNet, and a whole erasure (CLI and
library) is deterministic, resumable and loads in stock diffusers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file

import unlearning
from unlearning.families import Conditioning
from unlearning.latents import encode_prompts, encode_unconditional
from unlearning.pipeline import load_pipeline

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
TINY = {"steps": 4, "num_prompts": 8, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
        "eval_prompts": 2, "save_every": 2, "learning_rate": 1e-3}
PROMPTS = ["a painting of a dog", "a photo of a city at night"]


def run(base, out, cache, **kwargs):
    kwargs.setdefault("hyperparameters", TINY)
    return unlearning.erase(base, ["van gogh"], out, cache_dir=cache, **kwargs)


@pytest.fixture(scope="module")
def reference(sdxl_base, latent_cache, tmp_path_factory):
    return run(sdxl_base, tmp_path_factory.mktemp("sdxl-ref") / "out", latent_cache)


def unet_inputs_while_generating(pipe, prompts: list[str]) -> dict:
    """The keyword arguments the pipeline gives its UNet at the first sampler step."""
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        pipe(prompts, num_inference_steps=1, guidance_scale=7.5, output_type="latent")
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("base", ["tiny_base", "sdxl_base"])
def test_the_conditioning_is_what_the_pipeline_gives_its_unet(request, base):
    pipe = load_pipeline(request.getfixturevalue(base), "cpu")
    given = unet_inputs_while_generating(pipe, PROMPTS)  # classifier-free guidance: [unguided rows, prompt rows]
    ours = Conditioning.concatenate([encode_unconditional(pipe).expand(len(PROMPTS)), encode_prompts(pipe, PROMPTS)])
    expected = ours.unet_inputs()
    assert torch.equal(given["encoder_hidden_states"], expected["encoder_hidden_states"])
    assert (given.get("added_cond_kwargs") or {}).keys() == expected.get("added_cond_kwargs", {}).keys()
    for name, tensor in expected.get("added_cond_kwargs", {}).items():
        assert torch.equal(given["added_cond_kwargs"][name], tensor), name


def test_sdxl_conditioning_holds_both_encoders_the_pooled_text_and_the_time_ids(sdxl_base):
    pipe = load_pipeline(sdxl_base, "cpu")
    conditioning = encode_prompts(pipe, PROMPTS)
    assert conditioning.encoder_hidden_states.shape == (2, 77, 32 + 48)
    assert conditioning.added["text_embeds"].shape == (2, 24)
    assert conditioning.added["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2
    unconditional = encode_unconditional(pipe)  # SDXL base: force_zeros_for_empty_prompt
    assert len(unconditional) == 1 and not unconditional.encoder_hidden_states.any()


def test_the_cli_erases_sdxl_and_stock_diffusers_loads_and_generates(sdxl_base, latent_cache, tmp_path):
    out = tmp_path / "out"
    settings = [f"--set={k}={v}" for k, v in TINY.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "unlearning", "erase", "--base", str(sdxl_base), "--concept", "van gogh",
         "--out", str(out), "--cache-dir", str(latent_cache), *settings],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "erased van gogh with rg" in proc.stdout
    assert load_file(out / "delta.safetensors")
    pipe = StableDiffusionXLPipeline.from_pretrained(out)
    image = pipe("a painting", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)


def test_the_library_erases_sdxl_and_keeps_the_other_components(sdxl_base, reference):
    assert [r["step"] for r in reference.history] == list(range(TINY["steps"]))
    assert all(torch.isfinite(torch.tensor(v)) for v in reference.metrics.values())
    for name in ("text_encoder_2/model.safetensors", "tokenizer_2/tokenizer.json", "vae/diffusion_pytorch_model.safetensors"):
        assert (reference.out / name).read_bytes() == (sdxl_base / name).read_bytes()
    parent, delta = load_file(sdxl_base / UNET_FILE), load_file(reference.out / "delta.safetensors")
    assert delta and {**parent, **delta}.keys() == load_file(reference.out / UNET_FILE).keys()
    assert any(k.startswith("add_embedding.") for k in delta)  # the pooled-text and time-id embedding trained too


def test_same_inputs_give_byte_identical_sdxl_weights(sdxl_base, latent_cache, reference, tmp_path):
    again = run(sdxl_base, tmp_path / "again", latent_cache)
    for name in (UNET_FILE, "delta.safetensors"):
        assert (again.out / name).read_bytes() == (reference.out / name).read_bytes()


def test_an_interrupted_sdxl_run_resumes_to_the_same_weights(sdxl_base, latent_cache, reference, tmp_path):
    state, at = tmp_path / "state", {}
    stop_at_three = unlearning.Callbacks(on_progress=lambda stage, done, total: at.update(stage=stage, done=done),
                                         should_stop=lambda: at.get("stage") == "unlearning" and at["done"] >= 3)
    with pytest.raises(unlearning.Stopped) as stopped:
        run(sdxl_base, tmp_path / "out", latent_cache, state_dir=state, callbacks=stop_at_three)
    assert stopped.value.step == 3 and (state / "state.pt").is_file()
    resumed = run(sdxl_base, tmp_path / "out", latent_cache, state_dir=state)
    assert (resumed.out / UNET_FILE).read_bytes() == (reference.out / UNET_FILE).read_bytes()
    assert [r["step"] for r in resumed.history] == list(range(TINY["steps"]))


def test_esd_steers_sdxl_from_its_unguided_branch(sdxl_base, latent_cache, tmp_path):
    result = run(sdxl_base, tmp_path / "out", latent_cache, method="esd")
    delta = load_file(result.out / "delta.safetensors")
    assert delta and all(".attn2." in k for k in delta)
