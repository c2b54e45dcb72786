"""Whole erasures on a tiny real pipeline: outputs, determinism, resume, trainable sets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

import unlearning
from unlearning.fingerprint import file_sha256

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


TINY = {
    "steps": 4, "num_prompts": 8, "batch_size": 2, "generation_steps": 2,
    "generation_batch_size": 8, "eval_prompts": 2, "save_every": 2, "learning_rate": 1e-3,
}


def run(base, out, cache, **kwargs):
    kwargs.setdefault("hyperparameters", TINY)
    return unlearning.erase(base, ["van gogh"], out, cache_dir=cache, **kwargs)


@pytest.fixture(scope="module")
def reference(tiny_base, latent_cache, tmp_path_factory):
    return run(tiny_base, tmp_path_factory.mktemp("ref") / "out", latent_cache)


def test_the_cli_erases_and_stock_diffusers_loads_the_result(tiny_base, latent_cache, tmp_path):
    out = tmp_path / "out"
    settings = [f"--set={k}={v}" for k, v in TINY.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "unlearning", "erase", "--base", str(tiny_base), "--concept", "van gogh",
         "--out", str(out), "--cache-dir", str(latent_cache), *settings],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "erased van gogh with rg" in proc.stdout and str(out) in proc.stdout
    assert f"settings over rg's defaults: steps {TINY['steps']}," in proc.stderr
    pipe = StableDiffusionPipeline.from_pretrained(out)
    image = pipe("a painting", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)


def test_the_manifest_records_every_file_and_the_configuration(reference):
    manifest = json.loads((reference.out / "manifest.json").read_text())
    on_disk = sorted(p.relative_to(reference.out).as_posix() for p in reference.out.rglob("*") if p.is_file())
    assert [f["path"] for f in manifest["files"]] == [p for p in on_disk if p != "manifest.json"]
    for record in manifest["files"]:
        path = reference.out / record["path"]
        assert (record["size"], record["sha256"]) == (path.stat().st_size, file_sha256(path))
    assert manifest["method"] == "rg" and manifest["config"]["retain_weight"] == 1.6 and manifest["family"] == "sd"
    assert manifest["config"]["steps"] == TINY["steps"] and manifest["seed"] == 0
    assert set(manifest["versions"]) >= {"torch", "diffusers", "lethe"}
    assert (reference.out / "evaluation" / "metrics.json").is_file()


def test_the_delta_applied_to_the_parent_gives_the_new_unet(tiny_base, reference):
    parent = load_file(tiny_base / UNET_FILE)
    delta = load_file(reference.out / "delta.safetensors")
    child = load_file(reference.out / UNET_FILE)
    assert delta, "the run changed nothing"
    rebuilt = {**parent, **delta}
    assert rebuilt.keys() == child.keys()
    assert all(torch.equal(rebuilt[k], child[k]) for k in child)
    assert all(not torch.equal(parent[k], delta[k]) for k in delta)


def test_same_inputs_give_byte_identical_weights(tiny_base, latent_cache, reference, tmp_path):
    again = run(tiny_base, tmp_path / "again", latent_cache)
    for name in (UNET_FILE, "delta.safetensors"):
        assert (again.out / name).read_bytes() == (reference.out / name).read_bytes()


def test_low_memory_mode_gives_the_same_weights(tiny_base, latent_cache, reference, tmp_path):
    low = run(tiny_base, tmp_path / "low", latent_cache, hyperparameters={**TINY, "gradient_checkpointing": True})
    child, ref = load_file(low.out / UNET_FILE), load_file(reference.out / UNET_FILE)
    assert all(torch.allclose(child[k], ref[k], atol=1e-6) for k in ref)


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_base, latent_cache, reference, tmp_path):
    state = tmp_path / "state"
    steps_seen = []

    def stop_after_three() -> bool:
        steps_seen.append(None)
        return len(steps_seen) > 3

    with pytest.raises(unlearning.Stopped) as stopped:
        run(tiny_base, tmp_path / "out", latent_cache, state_dir=state,
            callbacks=unlearning.Callbacks(should_stop=stop_after_three))
    assert stopped.value.step == 3 and (state / "state.pt").is_file()
    assert not (tmp_path / "out").exists()
    resumed = run(tiny_base, tmp_path / "out", latent_cache, state_dir=state)
    assert (resumed.out / UNET_FILE).read_bytes() == (reference.out / UNET_FILE).read_bytes()
    assert [r["step"] for r in resumed.history] == list(range(TINY["steps"]))
    assert not (state / "state.pt").exists()


def test_a_state_resumes_from_a_copy_of_the_base_in_another_folder(tiny_base, latent_cache, reference, tmp_path):
    """As on another worker, whose copy of the base version lies in its own cache folder."""
    state, unlearning_steps = tmp_path / "state", []
    in_the_loop = unlearning.Callbacks(should_stop=lambda: (state / "state.pt").is_file())
    with pytest.raises(unlearning.Stopped):
        run(tiny_base, tmp_path / "out", latent_cache, state_dir=state, callbacks=in_the_loop)
    elsewhere = shutil.copytree(tiny_base, tmp_path / "other-worker" / "base")
    noting = unlearning.Callbacks(on_progress=lambda stage, step, _: stage == "unlearning" and unlearning_steps.append(step))
    resumed = run(elsewhere, tmp_path / "out", latent_cache, state_dir=state, callbacks=noting)
    assert unlearning_steps[0] == TINY["save_every"]  # from the saved step, not from 0
    assert (resumed.out / UNET_FILE).read_bytes() == (reference.out / UNET_FILE).read_bytes()


def test_a_state_of_another_run_is_refused(tiny_base, latent_cache, tmp_path):
    state, stage = tmp_path / "state", {}
    in_the_loop = unlearning.Callbacks(on_progress=lambda name, *_: stage.update(now=name),
                                       should_stop=lambda: stage.get("now") == "unlearning")
    with pytest.raises(unlearning.Stopped):
        run(tiny_base, tmp_path / "a", latent_cache, state_dir=state, callbacks=in_the_loop)
    with pytest.raises(unlearning.InvalidInput, match="another run"):
        run(tiny_base, tmp_path / "b", latent_cache, state_dir=state, seed=7)


def test_a_stop_is_heard_while_the_training_latents_are_generated(tiny_base, tmp_path):
    stages = []
    callbacks = unlearning.Callbacks(on_progress=lambda name, done, total: stages.append((name, done, total)),
                                     should_stop=lambda: True)
    with pytest.raises(unlearning.Stopped) as stopped:
        run(tiny_base, tmp_path / "out", tmp_path / "empty-cache", callbacks=callbacks)
    assert stopped.value.step == 0
    name, done, total = stages[-1]
    assert name == "preparing" and done < total
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("trainable", "markers"), [
    ("cross_attention", [".attn2."]),
    ("cross_attention_keys", [".attn2.to_k."]),
    ("cross_attention_keys_values", [".attn2.to_k.", ".attn2.to_v."]),
])
def test_cross_attention_training_changes_only_its_layers(tiny_base, latent_cache, tmp_path, trainable, markers):
    result = run(tiny_base, tmp_path / "out", latent_cache, hyperparameters={**TINY, "trainable": trainable})
    delta = load_file(result.out / "delta.safetensors")
    assert delta and all(any(m in k for m in markers) for k in delta)
    assert all(any(m in k for k in delta) for m in markers)  # each kind of layer changed
    parent, child = load_file(tiny_base / UNET_FILE), load_file(result.out / UNET_FILE)
    assert all(torch.equal(parent[k], child[k]) for k in child if k not in delta)


@pytest.mark.parametrize("method", ["graddiff", "ga", "esd"])
def test_every_baseline_runs_on_the_same_loop(tiny_base, latent_cache, tmp_path, method):
    settings = {k: v for k, v in TINY.items()}
    result = run(tiny_base, tmp_path / "out", latent_cache, method=method, hyperparameters=settings)
    assert result.manifest["method"] == method
    assert len(result.history) == TINY["steps"]
    assert all(torch.isfinite(torch.tensor(r["forget_loss"])) for r in result.history)
    assert load_file(result.out / "delta.safetensors")


def test_the_hinge_stops_the_forget_gradient(tiny_base, latent_cache, tmp_path):
    """Gradient ascent whose ceiling is below every loss has no gradient at all: Adam moves nothing."""
    result = run(tiny_base, tmp_path / "out", latent_cache, method="ga",
                 hyperparameters={**TINY, "forget_loss_ceiling": 1e-6})
    assert all(r["hinge"] for r in result.history)
    assert load_file(result.out / "delta.safetensors") == {}
    assert (result.out / UNET_FILE).read_bytes() != b""


def test_nothing_is_written_for_bad_input(tiny_base, tmp_path):
    with pytest.raises(unlearning.InvalidInput) as error:
        unlearning.erase(tiny_base, ["van gogh"], tmp_path / "out", hyperparameters={"steps": -1})
    assert error.value.field == "hyperparameters.steps"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_pipeline_names_what_is_missing(tiny_base, tmp_path):
    with pytest.raises(unlearning.NotAPipeline, match="model_index.json"):
        unlearning.erase(tiny_base / "unet", ["x"], tmp_path / "out")
    UNet2DConditionModel.from_pretrained(tiny_base / "unet")  # the folder itself is fine


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "/nonexistent", "--concept", "x"], "base: /nonexistent is not a Stable Diffusion pipeline folder"),
        (["--concept", "   "], "concepts[0]: must not be empty"),
        (["--concept", "x", "--steps", "0"], "hyperparameters.steps: must be between 1 and 100000"),
        (["--concept", "x", "--set", "bogus=1"], "hyperparameters.bogus: is not a setting"),
        (["--concept", "x", "--trainable", "lora", "--lora-rank", "0"], "hyperparameters.lora_rank: must be between 1 and 1024"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(tiny_base, tmp_path, args, message):
    if "--base" not in args:
        args = ["--base", str(tiny_base), *args]
    proc = subprocess.run([sys.executable, "-m", "unlearning", "erase", *args, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {message}" or message in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()
