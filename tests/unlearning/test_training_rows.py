"""A job draws only the training latents its steps reach: a short run of a large prompt set
generates a few pairs, not the whole set, and still trains on real latents, deterministically."""

from __future__ import annotations

import math

import unlearning
from unlearning.api import rows_used
from unlearning.train import batch_indices

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
SHORT = {"steps": 2, "num_prompts": 40, "batch_size": 3, "generation_steps": 2, "generation_batch_size": 8,
         "eval_prompts": 2, "learning_rate": 1e-3}


def test_the_rows_used_are_exactly_those_the_steps_read():
    for steps, batch, size in [(3, 8, 800), (7, 5, 30), (100, 8, 800), (1, 1, 1)]:
        read = {int(i) for step in range(steps) for i in batch_indices(0, step, batch, size)}
        assert rows_used(0, steps, batch, size) == sorted(read)


def latents_drawn(base, out, cache, **settings) -> tuple[int, unlearning.EraseResult]:
    totals = []
    callbacks = unlearning.Callbacks(on_progress=lambda stage, done, total: totals.append(total) if stage == "preparing" else None)
    result = unlearning.erase(base, ["van gogh"], out, hyperparameters={**SHORT, **settings}, cache_dir=cache,
                              callbacks=callbacks, audit="off")
    return totals[-1], result


def test_a_short_run_draws_only_the_pairs_its_steps_reach(tiny_base, tmp_path):
    drawn, result = latents_drawn(tiny_base, tmp_path / "short", tmp_path / "cache")
    assert drawn == 2 * SHORT["steps"] * SHORT["batch_size"] + 2 * SHORT["eval_prompts"]  # 12 + 4, not 84
    assert all(math.isfinite(r["forget_loss"]) and math.isfinite(r["retain_loss"]) for r in result.history)
    again, repeat = latents_drawn(tiny_base, tmp_path / "again", tmp_path / "cold")
    assert again == drawn and (repeat.out / UNET_FILE).read_bytes() == (result.out / UNET_FILE).read_bytes()


def test_a_run_that_makes_a_whole_pass_draws_every_pair(tiny_base, tmp_path):
    drawn, _ = latents_drawn(tiny_base, tmp_path / "long", tmp_path / "cache", steps=14)  # 42 >= 40 rows
    assert drawn == 2 * SHORT["num_prompts"] + 2 * SHORT["eval_prompts"]
