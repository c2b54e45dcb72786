"""The loop's update direction against the rule computed apart (METHOD.md section 1).

The trainer leaves d in its gradient buffer before Adam's step. Here g_f and g_r come from
two separate autograd passes over the same batch, noise and timesteps (the loop's draws are a
function of (seed, step)), and the rule is applied by the public `restricted_gradient`.

A sample-predicting schedule lets the test choose the regression targets: retain latents equal
to the forget latents give a conflict (g_f . g_r < 0), their negatives give none.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from unlearning import Callbacks, restricted_gradient
from unlearning.families import Conditioning
from unlearning.methods import make_config
from unlearning.noise import TrainingNoise
from unlearning.tiny import tiny_unet
from unlearning.train import TrainingData, Unlearner, batch_indices, seeded_generator, trainable_parameters

CPU = torch.device("cpu")
SEED = 0
FORGET = torch.full((4, 4, 8, 8), 3.0)  # (N, C, h, w)
EMBEDS = torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(0))  # (N, L, D)


def sample_noise() -> TrainingNoise:
    return TrainingNoise(DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       prediction_type="sample").config)


def trainer(method: str, retain_sign: float, **settings) -> Unlearner:
    torch.manual_seed(0)
    text = Conditioning(EMBEDS)
    data = TrainingData(FORGET, text, retain_sign * FORGET, text, text[:1])
    config = make_config(method, {"batch_size": 2, "learning_rate": 1e-3, **settings})
    return Unlearner(tiny_unet(), sample_noise(), config, data, SEED, CPU)


def stopping_after(asks: int) -> Callbacks:
    """Callbacks whose should_stop says yes from its (asks + 1)-th call: the loop asks once before each step."""
    asked = []

    def should_stop() -> bool:
        asked.append(None)
        return len(asked) > asks

    return Callbacks(should_stop=should_stop)


def separate_gradients(unlearner: Unlearner) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_f, g_r) of the trainer's next step, each from its own autograd pass."""
    unet, data, noise = unlearner.unet, unlearner.data, unlearner.noise
    params = [p for _, p in trainable_parameters(unet, unlearner.config.trainable)]
    batch = batch_indices(SEED, unlearner.step_index, unlearner.config.batch_size, len(data.forget_latents))
    generator = seeded_generator(SEED, "step", unlearner.step_index)

    def gradient(latents, conditioning: Conditioning) -> torch.Tensor:
        z_t, eps, t, z_0 = noise.noised(latents[batch], generator, CPU)
        loss = F.mse_loss(unet(z_t, t, encoder_hidden_states=conditioning.encoder_hidden_states[batch]).sample, z_0)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    g_f = -gradient(data.forget_latents, data.forget_conditioning)
    g_r = gradient(data.retain_latents, data.retain_conditioning)
    return g_f, g_r


def direction(unlearner: Unlearner) -> tuple[torch.Tensor, dict]:
    record = unlearner.update_direction()
    return unlearner.grads.buffer.clone(), record


@pytest.mark.parametrize("retain_sign, conflict", [(1.0, True), (-1.0, False)], ids=["conflict", "no-conflict"])
def test_the_step_takes_the_restricted_gradient(retain_sign, conflict):
    unlearner = trainer("rg", retain_sign, forget_loss_ceiling=None)
    g_f, g_r = separate_gradients(unlearner)
    d, record = direction(unlearner)
    assert (g_f.double() @ g_r.double() < 0) == conflict
    assert record["conflict"] == conflict and not record["hinge"]
    expected = restricted_gradient(g_f, g_r, unlearner.config.retain_weight)
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    if conflict:
        assert not torch.allclose(d, g_f + unlearner.config.retain_weight * g_r, rtol=1e-3)  # a projection happened
        assert d.double() @ g_f.double() >= 0 and d.double() @ g_r.double() >= 0


def test_graddiff_and_ga_take_their_sums():
    graddiff = trainer("graddiff", 1.0, forget_loss_ceiling=None)
    g_f, g_r = separate_gradients(graddiff)
    d, _ = direction(graddiff)
    torch.testing.assert_close(d, g_f + graddiff.config.retain_weight * g_r)
    ga = trainer("ga", 1.0, forget_loss_ceiling=None)
    g_f, _ = separate_gradients(ga)
    d, record = direction(ga)
    assert torch.equal(d, g_f) and "retain_loss" not in record


@pytest.mark.parametrize("method", ["rg", "graddiff"])
def test_a_hinged_step_takes_exactly_w_times_g_r(method):
    unlearner = trainer(method, 1.0, forget_loss_ceiling=1e-6)
    _, g_r = separate_gradients(unlearner)
    d, record = direction(unlearner)
    assert record["hinge"] and record["forget_loss"] > 1e-6
    assert torch.equal(d, g_r * unlearner.config.retain_weight)


def test_every_step_of_a_run_follows_the_rule():
    """Later steps too: the next step's draws and weights are those after Adam moved."""
    unlearner = trainer("rg", 1.0, forget_loss_ceiling=None)
    for _ in range(3):
        g_f, g_r = separate_gradients(unlearner)
        unlearner.step()  # Adam reads the buffer and leaves it as it is
        expected = restricted_gradient(g_f, g_r, unlearner.config.retain_weight)
        torch.testing.assert_close(unlearner.grads.buffer, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    assert [r["step"] for r in unlearner.history] == [0, 1, 2]
