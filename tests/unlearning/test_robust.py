"""The robust mode (`adversarial_steps`): a soft prompt learned on the current weights joins the
forget batch as extra rows, replaced at each search, kept in the resumable state."""

from __future__ import annotations

import pytest
import torch

import unlearning
from unlearning.methods import make_config
from unlearning.train import batch_indices, seeded_generator, trainable_parameters

from .test_loop import SEED, stopping_after, trainer

ROBUST = {"adversarial_steps": 3, "adversarial_every": 2, "forget_loss_ceiling": None}


def expected_forget_gradient(unlearner) -> torch.Tensor:
    """-grad of the mean of the forget rows' loss and the adversarial rows' loss, from the adversary's
    current conditioning and the step's draws, computed apart from the trainer's buffer."""
    data, step = unlearner.data, unlearner.step_index
    params = [p for _, p in trainable_parameters(unlearner.unet, unlearner.config.trainable)]
    batch = batch_indices(SEED, step, unlearner.config.batch_size, len(data.forget_latents))
    found = unlearner.method.adversary.found
    forget = unlearner.denoising_loss(data.forget_latents[batch], data.forget_conditioning[batch],
                                      seeded_generator(SEED, "step", step))
    adversarial = unlearner.denoising_loss(data.forget_latents[batch], found.expand(len(batch)),
                                           seeded_generator(SEED, "adversarial", step))
    return -torch.cat([g.flatten() for g in torch.autograd.grad((forget + adversarial) / 2, params)])


def test_the_forget_batch_trains_against_the_learned_rows():
    unlearner = trainer("ga", 1.0, **ROBUST)
    record = unlearner.step()  # step 0 searches first
    found = unlearner.method.adversary.found
    assert len(found) == 1 and {"search_loss", "adversarial_loss", "forget_loss"} <= set(record)
    start = unlearner.data.unconditional.encoder_hidden_states
    assert not torch.equal(found.encoder_hidden_states[:, 1:5], start[:, 1:5])  # the 4 learned vectors moved
    assert torch.equal(found.encoder_hidden_states[:, 5:], start[:, 5:])  # the rest is the unconditional prompt's
    expected = expected_forget_gradient(unlearner)  # step 1 uses step 0's rows, on the weights Adam moved
    unlearner.update_direction()
    torch.testing.assert_close(unlearner.grads.buffer, expected)


def test_the_rows_are_replaced_at_each_search():
    unlearner = trainer("rg", 1.0, **ROBUST)
    found = []
    for _ in range(4):
        unlearner.step()
        found.append(unlearner.method.adversary.found.encoder_hidden_states)
    assert found[0] is found[1] and found[2] is found[3] and not torch.equal(found[1], found[2])
    assert ["search_loss" in r for r in unlearner.history] == [True, False, True, False]
    assert all(p.requires_grad for _, p in unlearner.named) and unlearner.unet.training  # as the search found them


def test_a_robust_run_resumes_to_the_same_weights(tmp_path):
    settings = {**ROBUST, "steps": 4}  # searches at steps 0 and 2; the stop after 3 resumes between two
    whole = trainer("rg", 1.0, **settings)
    whole.run(unlearning.Callbacks(), None, "key")
    state = tmp_path / "state.pt"
    with pytest.raises(unlearning.Stopped):
        trainer("rg", 1.0, **settings).run(stopping_after(3), state, "key")
    assert torch.load(state, weights_only=True)["method"]["encoder_hidden_states"].shape[0] == 1
    resumed = trainer("rg", 1.0, **settings)
    resumed.run(unlearning.Callbacks(), state, "key")
    assert [r["adversarial_loss"] for r in resumed.history] == [r["adversarial_loss"] for r in whole.history]
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(resumed.named, whole.named))


@pytest.mark.parametrize("method, settings, field", [
    ("esd", {"adversarial_steps": 50}, "hyperparameters.adversarial_steps"),
    ("rg", {"adversarial_steps": -1}, "hyperparameters.adversarial_steps"),
    ("ga", {"adversarial_steps": 1.5}, "hyperparameters.adversarial_steps"),
    ("graddiff", {"adversarial_steps": 10_001}, "hyperparameters.adversarial_steps"),
    ("rg", {"adversarial_every": 0}, "hyperparameters.adversarial_every"),
    ("ga", {"adversarial_every": None}, "hyperparameters.adversarial_every"),
])
def test_bad_robust_settings_are_refused_by_name(method, settings, field):
    with pytest.raises(unlearning.InvalidInput) as error:
        make_config(method, settings)
    assert error.value.field == field


def test_the_robust_mode_is_off_by_default():
    assert make_config("rg").adversarial_steps == 0 and make_config("ga", {"adversarial_steps": None})
    assert trainer("graddiff", 1.0).method.adversary is None
