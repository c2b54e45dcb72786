"""The anchored forget target (`forget_target: "anchor"`): the forget pass descends on
mean((e_theta(z_t, c_forget) - e*(z_t, c_retain))^2) on the retain latents, e* the original UNet;
the gradient methods combine it with g_r as they combine the ascent's g_f. And the retain target
that holds the pairs' sentences to e*'s prediction (`retain_target: "original"`, and "guided": the
prediction the sampler steps with, the empty prompt's included)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import unlearning
from unlearning import restricted_gradient
from unlearning.families import Conditioning
from unlearning.methods import make_config
from unlearning.tiny import tiny_unet
from unlearning.train import TrainingData, Unlearner, batch_indices, seeded_generator

from .test_loop import CPU, EMBEDS, FORGET, SEED, sample_noise, stopping_after

RETAIN_EMBEDS = torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(1))  # the pairs' sentences
RETAIN = FORGET + torch.linspace(-1, 1, 8)  # the pairs' images: other latents than the concept's


def anchored(method: str, **settings) -> Unlearner:
    torch.manual_seed(0)
    data = TrainingData(FORGET, Conditioning(EMBEDS), RETAIN, Conditioning(RETAIN_EMBEDS), Conditioning(EMBEDS[:1]))
    config = make_config(method, {"batch_size": 2, "learning_rate": 1e-3, "forget_target": "anchor", **settings})
    return Unlearner(tiny_unet(), sample_noise(), config, data, SEED, CPU)


def gradients_apart(unlearner: Unlearner, original) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad L_a, grad L_r) of the trainer's next step, each from its own pass; L_a's target from
    `original`, a copy of the UNet as it was before any step, pushed past the pair's prediction
    by the config's anchor_guidance."""
    unet, data, noise = unlearner.unet, unlearner.data, unlearner.noise
    params = [p for _, p in unlearner.named]
    batch = batch_indices(SEED, unlearner.step_index, unlearner.config.batch_size, len(data.forget_latents))
    generator = seeded_generator(SEED, "step", unlearner.step_index)
    retain, forget = data.retain_conditioning.encoder_hidden_states[batch], data.forget_conditioning.encoder_hidden_states[batch]
    z_t, _, t, z_0 = noise.noised(data.retain_latents[batch], generator, CPU)
    with torch.no_grad():
        pair, concept = (original(z_t, t, encoder_hidden_states=c).sample for c in (retain, forget))
    goal = pair - unlearner.config.anchor_guidance * (concept - pair)
    anchor = F.mse_loss(unet(z_t, t, encoder_hidden_states=forget).sample, goal)
    z_t, _, t, z_0 = noise.noised(data.retain_latents[batch], generator, CPU)
    keep = F.mse_loss(unet(z_t, t, encoder_hidden_states=retain).sample, z_0)
    target, s = unlearner.config.to_dict().get("retain_target"), unlearner.config.guidance_scale
    empty = data.unconditional.encoder_hidden_states.expand(len(batch), -1, -1)
    guided = lambda m: m(z_t, t, encoder_hidden_states=empty).sample * (1 - s) + s * m(z_t, t, encoder_hidden_states=retain).sample  # noqa: E731
    if target == "original":  # the pair held to the original's prediction
        with torch.no_grad():
            z_0 = original(z_t, t, encoder_hidden_states=retain).sample
        keep = F.mse_loss(unet(z_t, t, encoder_hidden_states=retain).sample, z_0)
    elif target == "guided":  # the guided prediction held to the original's, over s^2
        with torch.no_grad():
            goal = guided(original)
        keep = F.mse_loss(guided(unet), goal) / s ** 2
    flat = lambda loss: torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])  # noqa: E731
    return flat(anchor), flat(keep)


@pytest.mark.parametrize("method, guidance, retain", [
    ("rg", 0.0, {}), ("graddiff", 0.0, {}), ("ga", 0.0, {}), ("rg", 1.5, {}),
    ("rg", 0.5, {"retain_target": "original"}), ("graddiff", 0.0, {"retain_target": "original"}),
    ("rg", 0.5, {"retain_target": "guided"}), ("graddiff", 0.0, {"retain_target": "guided", "guidance_scale": 3.0}),
])
def test_every_step_descends_on_the_anchor_and_combines_it_as_the_method_does(method, guidance, retain):
    # a ceiling the ascent would pass: the anchor has none
    unlearner = anchored(method, forget_loss_ceiling=1e-6, anchor_guidance=guidance, **retain)
    original = copy.deepcopy(unlearner.unet).eval()
    for _ in range(3):
        g_a, g_r = gradients_apart(unlearner, original)
        record = unlearner.step()
        w = unlearner.config.to_dict().get("retain_weight")
        expected = {"rg": lambda: restricted_gradient(g_a, g_r, w), "graddiff": lambda: g_a + w * g_r, "ga": lambda: g_a}[method]()
        torch.testing.assert_close(unlearner.grads.buffer, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
        assert not record["hinge"]


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_the_robust_mode_holds_the_learned_rows_and_the_empty_prompt_to_the_empty_prompts_prediction(guidance):
    unlearner = anchored("ga", adversarial_steps=3, adversarial_every=2, anchor_guidance=guidance)
    original = copy.deepcopy(unlearner.unet).eval()
    record = unlearner.step()  # step 0 searches first; step 1 uses its rows, on the weights Adam moved
    assert {"search_loss", "adversarial_loss", "forget_loss"} <= set(record) and not record["hinge"]
    found = unlearner.method.adversary.found.encoder_hidden_states
    batch = batch_indices(SEED, 1, 2, len(FORGET))
    params = [p for _, p in unlearner.named]

    def towards(latents, conditioning, stand_in, generator):
        z_t, _, t, _ = unlearner.noise.noised(latents, generator, CPU)
        with torch.no_grad():
            goal, concept = (original(z_t, t, encoder_hidden_states=c).sample for c in (stand_in, conditioning))
        return F.mse_loss(unlearner.unet(z_t, t, encoder_hidden_states=conditioning).sample, goal - guidance * (concept - goal))

    # the concept's sentences towards their pairs on the pairs' images; the learned rows, then the empty
    # prompt itself (the test data's is EMBEDS[:1]), towards the empty prompt on the concept's images
    empty, drawn = EMBEDS[:1].expand(2, -1, -1), seeded_generator(SEED, "adversarial", 1)
    halves = towards(RETAIN[batch], EMBEDS[batch], RETAIN_EMBEDS[batch], seeded_generator(SEED, "step", 1)) + \
        towards(FORGET[batch], found.expand(2, -1, -1), empty, drawn) + towards(FORGET[batch], empty, empty, drawn)
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(halves / 2, params)])
    unlearner.update_direction()
    torch.testing.assert_close(unlearner.grads.buffer, expected)


def anchor_gap(unlearner: Unlearner, original) -> float:
    """L_a on every row at fixed draws: how far the concept's sentences are from their pairs'."""
    generator = seeded_generator(SEED, "measure")
    z_t, _, t, _ = unlearner.noise.noised(unlearner.data.retain_latents, generator, CPU)
    with torch.no_grad():
        goal = original(z_t, t, encoder_hidden_states=RETAIN_EMBEDS).sample
        return F.mse_loss(unlearner.unet(z_t, t, encoder_hidden_states=EMBEDS).sample, goal).item()


def test_an_anchored_run_brings_the_concepts_sentences_to_their_pairs():
    unlearner = anchored("ga", steps=30, trainable="cross_attention")  # the whole UNet's Adam steps drift more
    original = copy.deepcopy(unlearner.unet).eval()
    before = anchor_gap(unlearner, original)
    unlearner.run(unlearning.Callbacks(), None, "key")
    assert anchor_gap(unlearner, original) < 0.5 * before


@pytest.mark.parametrize("targets", [{}, {"forget_target": "ascent", "retain_target": "original"}, {"retain_target": "guided"}])
def test_a_resumed_run_keeps_the_original_target(tmp_path, targets):
    """The target's weights are taken before the saved state is loaded over the trainable ones."""
    whole = anchored("rg", steps=4, **targets)
    whole.run(unlearning.Callbacks(), None, "key")
    state = tmp_path / "state.pt"
    with pytest.raises(unlearning.Stopped):
        anchored("rg", steps=4, **targets).run(stopping_after(2), state, "key")
    resumed = anchored("rg", steps=4, **targets)
    resumed.run(unlearning.Callbacks(), state, "key")
    losses = ("forget_loss", "retain_loss")
    assert [[r[k] for k in losses] for r in resumed.history] == [[r[k] for k in losses] for r in whole.history]
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(resumed.named, whole.named))


@pytest.mark.parametrize("settings, field, message", [
    ({"forget_target": "descent"}, "forget_target", "must be one of ascent, anchor"),
    ({"forget_target": "anchor", "anchor_guidance": -1.0}, "anchor_guidance", "between 0 and 100"),
    ({"retain_target": "model"}, "retain_target", "must be one of noise, original, guided"),
])
def test_bad_anchor_settings_are_refused_by_name(settings, field, message):
    with pytest.raises(unlearning.InvalidInput) as error:
        make_config("rg", settings)
    assert error.value.field == f"hyperparameters.{field}" and message in str(error.value)


def test_gradient_ascent_draws_the_retain_images_only_with_the_anchor():
    assert make_config("rg").forget_target == "ascent"
    assert not make_config("ga").draws_retain_set
    assert make_config("ga", {"forget_target": "anchor"}).draws_retain_set


@pytest.mark.parametrize("target", ["original", "guided"])
def test_the_original_retain_targets_start_at_zero_and_hold_the_pairs_as_the_weights_move(target):
    unlearner = anchored("rg", steps=5, forget_target="ascent", retain_target=target, forget_loss_ceiling=None)
    unlearner.run(unlearning.Callbacks(), None, "key")
    kept = [r["retain_loss"] for r in unlearner.history]
    assert kept[0] == 0.0 and all(k > 0 for k in kept[1:])  # the weights are the original's only before the first step
    assert unlearner.method.original is None  # released with the run


def test_at_guidance_scale_one_the_guided_target_is_the_sentences_own():
    """g(c) = e(empty) + 1 (e(c) - e(empty)) = e(c): the empty prompt's passes cancel."""
    runs = [anchored("rg", steps=3, retain_target=target, guidance_scale=1.0) for target in ("original", "guided")]
    for run in runs:
        run.run(unlearning.Callbacks(), None, "key")
    conditional, guided = ([r["retain_loss"] for r in run.history] for run in runs)
    assert guided[-1] > 0
    torch.testing.assert_close(guided, conditional, rtol=1e-4, atol=1e-9)
