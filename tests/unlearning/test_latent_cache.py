"""The latents cache cannot change a job's bytes: cold, warmed by another batch size, partly
filled by another prompt list or holding a truncated file, the same job gets the same latents
and the same UNet. The sampler's work is counted through the progress callback."""

from __future__ import annotations

import pytest
import torch

import unlearning
from unlearning.latents import LatentCache, generate_latents, sample_seeds
from unlearning.pipeline import load_pipeline

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
SETTINGS = {"steps": 2, "guidance_scale": 7.5, "height": 16, "width": 16, "scheduler": "DDIMScheduler"}
THINGS = ("dog", "cat", "car", "tree", "house", "city", "man", "woman", "church", "truck")
PROMPTS = [f"a painting of a {thing} at night" for thing in THINGS]  # 10: batches of 4, 4 and 2


@pytest.fixture(scope="module")
def pipe(tiny_base):
    return load_pipeline(tiny_base, "cpu")


def generate(pipe, cache_dir, batch_size: int, prompts=PROMPTS) -> tuple[torch.Tensor, int]:
    """The latents and how many of them the sampler made (the rest came from the cache)."""
    done = []
    latents = generate_latents(pipe, prompts, sample_seeds(0, prompts), SETTINGS, LatentCache(cache_dir),
                               "tiny", batch_size, lambda count, total: done.append(count))
    return latents, done[-1] - done[0]


def cache_files(cache_dir) -> list:
    return sorted(cache_dir.rglob("*.safetensors"))


def test_a_cache_filled_with_another_batch_size_gives_the_cold_bytes(pipe, tmp_path):
    cold, _ = generate(pipe, tmp_path / "cold", batch_size=4)
    other, _ = generate(pipe, tmp_path / "warm", batch_size=3)
    assert not torch.equal(other, cold), "batching no longer changes the bytes: this test tests nothing"
    warm, made = generate(pipe, tmp_path / "warm", batch_size=4)
    assert torch.equal(warm, cold) and made == len(PROMPTS)


def test_a_cache_partly_filled_by_another_prompt_list_gives_the_cold_bytes(pipe, tmp_path):
    cold, _ = generate(pipe, tmp_path / "cold", batch_size=4)
    overlapping = PROMPTS[:4] + ["a photo of a beach"] + PROMPTS[5:7]  # the first batch is the job's own
    generate(pipe, tmp_path / "warm", batch_size=4, prompts=overlapping)
    warm, made = generate(pipe, tmp_path / "warm", batch_size=4)
    assert torch.equal(warm, cold)
    assert made == len(PROMPTS) - 4, "the shared first batch should have come from the cache"


def test_the_same_call_again_generates_nothing(pipe, tmp_path):
    first, made_first = generate(pipe, tmp_path, batch_size=4)
    again, made_again = generate(pipe, tmp_path, batch_size=4)
    assert (made_first, made_again) == (len(PROMPTS), 0)
    assert torch.equal(again, first) and len(cache_files(tmp_path)) == 3


def test_a_truncated_cache_file_is_generated_again(pipe, tmp_path):
    cold, _ = generate(pipe, tmp_path, batch_size=4)
    damaged = max(cache_files(tmp_path), key=lambda path: path.stat().st_size)  # a full batch of 4
    damaged.write_bytes(damaged.read_bytes()[:-100])
    again, made = generate(pipe, tmp_path, batch_size=4)
    assert torch.equal(again, cold) and made == 4
    assert generate(pipe, tmp_path, batch_size=4)[1] == 0, "the damaged file was not replaced"


def test_a_stop_between_batches_keeps_the_finished_ones(pipe, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_one_batch(done: int, total: int) -> None:
        if done >= 4:
            raise Stop

    prompts = PROMPTS
    with pytest.raises(Stop):
        generate_latents(pipe, prompts, sample_seeds(0, prompts), SETTINGS, LatentCache(tmp_path), "tiny", 4,
                         stop_after_one_batch)
    assert len(cache_files(tmp_path)) == 1 and not list(tmp_path.rglob("*.tmp"))
    assert generate(pipe, tmp_path, batch_size=4)[1] == len(PROMPTS) - 4


def test_erase_gives_the_same_unet_on_a_cold_cache_and_one_warmed_with_another_batch_size(tiny_base, tmp_path):
    hyper = {"steps": 2, "num_prompts": 8, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
             "eval_prompts": 2, "learning_rate": 1e-3}

    def unet_bytes(name: str, cache: str, generation_batch_size: int) -> bytes:
        settings = {**hyper, "generation_batch_size": generation_batch_size}
        result = unlearning.erase(tiny_base, ["van gogh"], tmp_path / name, cache_dir=tmp_path / cache,
                                  hyperparameters=settings, device="cpu")
        return (result.out / UNET_FILE).read_bytes()

    cold = unet_bytes("cold", "cold-cache", 8)
    other = unet_bytes("other", "warm-cache", 3)
    assert other != cold, "the generation batch size no longer reaches the weights: this test tests nothing"
    assert unet_bytes("warm", "warm-cache", 8) == cold
