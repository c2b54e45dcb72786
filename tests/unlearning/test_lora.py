"""LoRA erasure (`trainable: "lora"`): the loop trains only an adapter's A and B matrices, and
the result holds the adapter in diffusers' and kohya's formats beside the fused folder.

Each file is checked by loading it the way its users do: the diffusers file and the kohya file
with `load_lora_weights` on the base, the folder with stock `from_pretrained`; all three must
give the UNet the same outputs.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors import safe_open
from safetensors.torch import load_file

import unlearning
from unlearning import restricted_gradient
from unlearning.families import Conditioning
from unlearning.fingerprint import file_sha256, model_fingerprint
from unlearning.methods import make_config, validate
from unlearning.noise import TrainingNoise
from unlearning.tiny import tiny_unet
from unlearning.train import TrainingData, Unlearner, batch_indices, seeded_generator

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
RANK = 4
TINY = {"steps": 4, "num_prompts": 8, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
        "eval_prompts": 2, "save_every": 2, "learning_rate": 1e-2, "trainable": "lora", "lora_rank": RANK}
PIPELINES = {"tiny_base": StableDiffusionPipeline, "sdxl_base": StableDiffusionXLPipeline}
CPU = torch.device("cpu")
KOHYA_KEY = re.compile(r"lora_unet_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)")


def run(base, out, cache, **kwargs):
    kwargs.setdefault("hyperparameters", TINY)
    return unlearning.erase(base, ["van gogh"], out, cache_dir=cache, **kwargs)


@pytest.fixture(scope="module")
def erased(request, latent_cache, tmp_path_factory):
    """One LoRA erasure per family, made once: {fixture name: (base, result)}."""
    made = {}

    def get(name: str):
        if name not in made:
            base = request.getfixturevalue(name)
            made[name] = base, run(base, tmp_path_factory.mktemp(f"lora-{name}") / "out", latent_cache)
        return made[name]

    return get


def unet_outputs(unet) -> torch.Tensor:
    """The UNet on fixed inputs at three timesteps (SDXL's added conditioning when it takes it)."""
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(3, 4, 8, 8, generator=g)
    states = torch.randn(3, 77, unet.config.cross_attention_dim, generator=g)
    added = {}
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        added = {"added_cond_kwargs": {"text_embeds": torch.randn(3, pooled, generator=g),
                                       "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16]]).repeat(3, 1)}}
    with torch.no_grad():
        return unet(sample, torch.tensor([1, 400, 999]), states, **added).sample


@pytest.mark.parametrize("family", list(PIPELINES))
def test_the_adapter_files_load_on_the_base_and_give_the_fused_folder(erased, family):
    base, result = erased(family)
    pipeline = PIPELINES[family]
    fused = unet_outputs(pipeline.from_pretrained(result.out).unet)
    assert not torch.allclose(fused, unet_outputs(pipeline.from_pretrained(base).unet), atol=1e-4), "nothing was erased"
    for adapter in (result.out / "lora", result.out / result.manifest["lora"]["kohya"]):
        pipe = pipeline.from_pretrained(base)
        pipe.load_lora_weights(adapter)
        assert torch.allclose(unet_outputs(pipe.unet), fused, atol=1e-5), adapter.name


@pytest.mark.parametrize("family", list(PIPELINES))
def test_the_kohya_file_has_kohya_keys(erased, family):
    base, result = erased(family)
    kohya = load_file(result.out / result.manifest["lora"]["kohya"])
    assert all(KOHYA_KEY.fullmatch(key) for key in kohya), [k for k in kohya if not KOHYA_KEY.fullmatch(k)][:3]
    modules = {key.split(".")[0] for key in kohya}
    assert len(kohya) == 3 * len(modules) and result.manifest["lora"]["tensors"] == 2 * len(modules)  # A and B
    unet = PIPELINES[family].from_pretrained(base).unet
    adapted = [name for name, _ in unet.named_modules() if re.search(r"\.(to_q|to_k|to_v|to_out\.0)$", name)]
    assert modules == {"lora_unet_" + name.replace(".", "_") for name in adapted}  # the diffusers layer names
    for module in modules:
        down, up = kohya[f"{module}.lora_down.weight"], kohya[f"{module}.lora_up.weight"]
        assert down.shape[0] == up.shape[1] == RANK and kohya[f"{module}.alpha"].item() == RANK


def test_the_manifest_lists_the_adapter_files_and_the_settings(erased):
    _, result = erased("tiny_base")
    manifest = json.loads((result.out / "manifest.json").read_text())
    lora = manifest["lora"]
    assert lora["diffusers"] == "lora/pytorch_lora_weights.safetensors"
    assert lora["kohya"] == "lora/erase-van-gogh_kohya.safetensors"
    assert (lora["rank"], lora["alpha"], lora["target_modules"]) == (RANK, RANK, ["to_q", "to_k", "to_v", "to_out.0"])
    config = manifest["config"]
    assert (config["trainable"], config["lora_rank"], config["lora_target_modules"]) == ("lora", RANK, lora["target_modules"])
    records = {f["path"]: f for f in manifest["files"]}
    for path in (lora["diffusers"], lora["kohya"]):
        assert records[path]["sha256"] == file_sha256(result.out / path)
    with safe_open(result.out / lora["diffusers"], "pt") as f:
        assert len(list(f.keys())) == lora["tensors"]


@pytest.mark.parametrize("family, name", [("tiny_base", "sd"), ("sdxl_base", "sdxl")])
def test_the_manifest_names_the_family(erased, family, name):
    _, result = erased(family)
    assert json.loads((result.out / "manifest.json").read_text())["family"] == name


def test_a_lora_result_used_as_a_base_is_known_by_its_model_files_not_its_adapter(erased, tmp_path):
    _, result = erased("tiny_base")
    fingerprint = model_fingerprint(result.out)
    (result.out / "lora" / "pytorch_lora_weights.safetensors").rename(tmp_path / "moved.safetensors")
    try:
        assert model_fingerprint(result.out) == fingerprint
    finally:
        (tmp_path / "moved.safetensors").rename(result.out / "lora" / "pytorch_lora_weights.safetensors")
    (result.out / UNET_FILE).rename(tmp_path / "unet.safetensors")
    try:
        assert model_fingerprint(result.out) != fingerprint  # the UNet does count
    finally:
        (tmp_path / "unet.safetensors").rename(result.out / UNET_FILE)


def test_the_delta_changes_only_the_adapted_layers(erased):
    base, result = erased("tiny_base")
    parent, child = load_file(base / UNET_FILE), load_file(result.out / UNET_FILE)
    delta = load_file(result.out / "delta.safetensors")
    assert parent.keys() == child.keys()  # the adapter is fused and gone: a plain UNet
    assert delta and all(re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.weight$", k) for k in delta)
    assert all(torch.equal(child[k], delta.get(k, parent[k])) for k in child)


def test_same_seed_gives_byte_identical_adapters(tiny_base, latent_cache, erased, tmp_path):
    _, reference = erased("tiny_base")
    again = run(tiny_base, tmp_path / "again", latent_cache)
    for name in (reference.manifest["lora"]["diffusers"], reference.manifest["lora"]["kohya"], UNET_FILE):
        assert (again.out / name).read_bytes() == (reference.out / name).read_bytes(), name
    other_seed = run(tiny_base, tmp_path / "seed-1", latent_cache, seed=1)
    assert (other_seed.out / "lora/pytorch_lora_weights.safetensors").read_bytes() != \
        (reference.out / "lora/pytorch_lora_weights.safetensors").read_bytes()


def test_an_interrupted_lora_run_resumes_to_the_same_adapter(sdxl_base, latent_cache, erased, tmp_path):
    _, reference = erased("sdxl_base")
    state, at = tmp_path / "state", {}
    stop_at_three = unlearning.Callbacks(on_progress=lambda stage, done, total: at.update(stage=stage, done=done),
                                         should_stop=lambda: at.get("stage") == "unlearning" and at["done"] >= 3)
    with pytest.raises(unlearning.Stopped):
        run(sdxl_base, tmp_path / "out", latent_cache, state_dir=state, callbacks=stop_at_three)
    saved = torch.load(state / "state.pt", weights_only=True)["params"]
    assert saved and all(".lora_A." in name or ".lora_B." in name for name in saved)
    resumed = run(sdxl_base, tmp_path / "out", latent_cache, state_dir=state)
    for name in (reference.manifest["lora"]["diffusers"], reference.manifest["lora"]["kohya"], UNET_FILE):
        assert (resumed.out / name).read_bytes() == (reference.out / name).read_bytes(), name


def lora_trainer(method: str = "rg", **settings) -> Unlearner:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(4, 4, 8, 8, generator=g), Conditioning(torch.randn(4, 6, 32, generator=g))
    data = TrainingData(latents, text, latents.clone(), text, text[:1])  # retain = forget: the two gradients conflict
    noise = TrainingNoise(DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        prediction_type="sample").config)
    config = make_config(method, {"batch_size": 2, "learning_rate": 1e-3, "trainable": "lora", "lora_rank": RANK, **settings})
    return Unlearner(tiny_unet(), noise, config, data, 0, CPU)


def test_only_the_adapter_is_in_the_gradient_buffer():
    trainer = lora_trainer()
    unet = trainer.unet
    names = [name for name, _ in trainer.named]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    adapted = [m for name, m in unet.named_modules() if re.search(r"\.(to_q|to_k|to_v|to_out\.0)$", name)]
    expected = sum(RANK * (m.in_features + m.out_features) for m in adapted)  # A (r, in) and B (out, r) each
    whole = sum(p.numel() for name, p in unet.named_parameters() if name not in names)
    assert trainer.grads.rows.shape == (2, expected)  # g_f and the buffer, adapter-sized
    assert expected < whole / 10
    before = {n: p.detach().clone() for n, p in unet.named_parameters() if n not in names}
    trainer.step()
    assert all(torch.equal(p, before[n]) for n, p in unet.named_parameters() if n in before)
    assert all(not p.requires_grad and p.grad is None for n, p in unet.named_parameters() if n in before)


def test_the_rule_runs_on_the_adapter_vectors():
    """d in the buffer equals restricted_gradient of g_f and g_r taken over the adapter's parameters
    (after one step, so that B is no longer zero and A has a gradient too); no hinge, so both count."""
    trainer = lora_trainer(forget_loss_ceiling=None)
    trainer.step()
    params = [p for _, p in trainer.named]
    batch = batch_indices(0, 1, 2, 4)
    generator = seeded_generator(0, "step", 1)

    def gradient(latents, conditioning) -> torch.Tensor:
        z_t, _, t, z_0 = trainer.noise.noised(latents[batch], generator, CPU)
        loss = F.mse_loss(trainer.unet(z_t, t, encoder_hidden_states=conditioning.encoder_hidden_states[batch]).sample, z_0)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    g_f = -gradient(trainer.data.forget_latents, trainer.data.forget_conditioning)
    g_r = gradient(trainer.data.retain_latents, trainer.data.retain_conditioning)
    record = trainer.update_direction()
    assert record["conflict"]  # the projections are taken
    assert torch.allclose(trainer.grads.buffer, restricted_gradient(g_f, g_r, 1.6), rtol=1e-5, atol=1e-8)
    assert (g_f[: params[0].numel()] != 0).any()  # the first A matrix has a gradient


def test_the_adapter_starts_as_no_change_and_from_the_seed():
    first, second = lora_trainer(), lora_trainer()
    a_first = {n: p for n, p in first.named if ".lora_A." in n}
    assert all(torch.equal(p, dict(second.named)[n]) for n, p in a_first.items())
    assert all(p.abs().sum() > 0 for p in a_first.values())
    assert all(not p.any() for n, p in first.named if ".lora_B." in n)  # B = 0: the base's outputs


def test_low_memory_mode_gives_the_same_lora_step():
    plain, low = lora_trainer(), lora_trainer(gradient_checkpointing=True)
    for trainer in (plain, low):
        trainer.step()
        trainer.update_direction()
    assert low.grads.buffer.abs().sum() > 0
    assert torch.allclose(low.grads.buffer, plain.grads.buffer, rtol=1e-5, atol=1e-7)


def test_esd_trains_an_adapter_from_its_frozen_start():
    trainer = lora_trainer("esd", batch_size=1)
    record = trainer.step()
    assert torch.isfinite(torch.tensor(record["forget_loss"]))
    assert set(trainer.method.frozen) == {name for name, _ in trainer.named}


@pytest.mark.parametrize(
    "values, field",
    [
        ({"lora_rank": 0}, "hyperparameters.lora_rank"),
        ({"lora_rank": 1025}, "hyperparameters.lora_rank"),
        ({"lora_rank": 2.5}, "hyperparameters.lora_rank"),
        ({"lora_target_modules": []}, "hyperparameters.lora_target_modules"),
        ({"lora_target_modules": "to_q"}, "hyperparameters.lora_target_modules"),
        ({"lora_target_modules": ["to_q", "to_q"]}, "hyperparameters.lora_target_modules"),
        ({"lora_target_modules": ["../unet"]}, "hyperparameters.lora_target_modules"),
        ({"trainable": "loras"}, "hyperparameters.trainable"),
    ],
)
def test_bad_lora_settings_name_their_field(values, field):
    with pytest.raises(unlearning.InvalidInput) as error:
        validate("rg", {"trainable": "lora", **values})
    assert error.value.field == field


def test_the_settings_are_json_with_their_defaults():
    config = validate("rg", {"trainable": "lora"})
    assert (config["lora_rank"], config["lora_target_modules"]) == (8, ["to_q", "to_k", "to_v", "to_out.0"])
    assert json.loads(json.dumps(config)) == config


@pytest.mark.parametrize("targets, message", [(["to_qq"], "'to_qq' matches no layer"),
                                              (["attn1"], "'attn1' matches .*attn1 \\(Attention\\)")])
def test_a_target_the_unet_lacks_is_refused_before_any_work(tiny_base, tmp_path, targets, message):
    stages = []
    callbacks = unlearning.Callbacks(on_progress=lambda stage, done, total: stages.append((stage, done)))
    with pytest.raises(unlearning.InvalidInput, match=message) as error:
        run(tiny_base, tmp_path / "out", tmp_path / "cache",
            hyperparameters={**TINY, "lora_target_modules": targets}, callbacks=callbacks)
    assert error.value.field == "hyperparameters.lora_target_modules"
    assert stages == [("preparing", 0)] and list(tmp_path.iterdir()) == []
