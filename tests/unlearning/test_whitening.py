"""Key/value whitening (`unlearning/whitening.py`): same function, other coordinates, and a step
for one word's keys that moves less of a word whose state points the same way."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

import unlearning
from unlearning.families import Conditioning
from unlearning.methods import make_config
from unlearning.tiny import tiny_unet
from unlearning.train import TrainingData, Unlearner
from unlearning.whitening import second_moment, whiten, whitening_pair

from .test_loop import FORGET, SEED, CPU, sample_noise, separate_gradients, stopping_after, trainer

SHARED = torch.zeros(8).index_fill_(0, torch.tensor([0]), 5.0)  # one large direction every word's state has


def word(axis: int) -> torch.Tensor:
    return SHARED + 0.5 * torch.nn.functional.one_hot(torch.tensor(axis), 8).float()


class Block(torch.nn.Module):
    """The smallest module whose names the whitening looks for: block.attn2.to_k."""

    def __init__(self):
        super().__init__()
        self.attn2 = torch.nn.Module()
        self.attn2.to_k = torch.nn.Linear(8, 4, bias=False)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    root = torch.nn.Module()
    root.block = Block()
    return root


def states() -> Conditioning:
    return Conditioning(torch.stack([word(1), word(2), word(3)]).unsqueeze(1))  # 3 prompts of one token


def test_the_pair_whitens_the_second_moment():
    moment = second_moment([states(), states()])
    torch.testing.assert_close(moment, torch.stack([word(1), word(2), word(3)]).T @ torch.stack([word(1), word(2), word(3)]) / 3)
    forward, inverse = whitening_pair(moment, 1e-6)
    torch.testing.assert_close(forward @ inverse, torch.eye(8), atol=1e-4, rtol=0)
    scaled = moment / (moment.trace() / 8)
    on_states = forward @ scaled @ forward  # the identity on the states' span, 0 off it
    span = torch.linalg.matrix_rank(scaled).item()
    assert span == 3 and torch.linalg.eigvalsh(on_states)[-span:].allclose(torch.ones(span), atol=1e-3)


def moved_keys(whitening: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step that pulls word 1's key towards another value: (its key's change, word 2's)."""
    root = model()
    weight_name = "block.attn2.to_k.weight"
    if whitening is not None:
        assert whiten(root, {weight_name}, [states()], whitening) == [root.block.attn2.to_k]
    to_k = root.block.attn2.to_k
    before = [to_k(word(1)).detach(), to_k(word(2)).detach()]
    loss = (to_k(word(1)) - before[0] - 1.0).square().sum()
    params = [p for p in root.parameters()]
    assert len(params) == 1
    loss.backward()
    with torch.no_grad():
        params[0] -= 1e-3 * params[0].grad
    return to_k(word(1)).detach() - before[0], to_k(word(2)).detach() - before[1]


def test_whitening_keeps_the_function():
    root = model()
    plain = root.block.attn2.to_k(word(2)).detach()
    whiten(root, {"block.attn2.to_k.weight"}, [states()], 1e-3)
    assert parametrize.is_parametrized(root.block.attn2.to_k, "weight")
    torch.testing.assert_close(root.block.attn2.to_k(word(2)), plain, rtol=1e-4, atol=1e-5)


def test_a_step_for_one_word_moves_another_less():
    own, other = moved_keys(None)
    assert other.norm() / own.norm() > 0.95  # the shared direction carries the step to word 2
    own, other = moved_keys(1e-3)
    assert other.norm() / own.norm() < 0.2


def test_a_module_not_trained_or_of_another_width_is_left_alone():
    root = model()
    assert whiten(root, {"block.attn2.to_q.weight"}, [states()], 1e-3) == []
    wide = Conditioning(torch.zeros(2, 1, 16))
    assert whiten(root, {"block.attn2.to_k.weight"}, [wide], 1e-3) == []
    assert not parametrize.is_parametrized(root.block.attn2.to_k)


def test_a_lora_adapter_is_whitened_in_its_a_matrices():
    root = model()
    root.block.attn2.to_k.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(8, 2, bias=False)})
    root.block.attn2.to_k.lora_B = torch.nn.ModuleDict({"default": torch.nn.Linear(2, 4, bias=False)})
    names = {"block.attn2.to_k.lora_A.default.weight", "block.attn2.to_k.lora_B.default.weight"}
    assert whiten(root, names, [states()], 1e-3) == [root.block.attn2.to_k.lora_A["default"]]


def test_the_job_whitens_against_the_states_it_keeps_not_the_concepts():
    """R comes from the retain sentences' and the empty prompt's states, not the forget sentences'."""
    texts = [torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(i)) for i in (1, 2, 3)]
    forget, retain, empty = Conditioning(texts[0]), Conditioning(texts[1]), Conditioning(texts[2][:1])
    data = TrainingData(FORGET, forget, -FORGET, retain, empty)
    config = make_config("rg", {"batch_size": 2, "key_value_whitening": 0.01})
    unlearner = Unlearner(tiny_unet(), sample_noise(), config, data, SEED, CPU)
    kept, _ = whitening_pair(second_moment([retain, empty]), 0.01)
    assert unlearner.whitened
    for module in unlearner.whitened:
        torch.testing.assert_close(module.parametrizations.weight[0].whiten, kept)


@pytest.mark.parametrize("trainable", ["unet", "cross_attention", "cross_attention_keys", "cross_attention_keys_values"])
def test_the_step_is_the_restricted_gradient_in_whitened_coordinates(trainable):
    unlearner = trainer("rg", 1.0, forget_loss_ceiling=None, key_value_whitening=0.01, trainable=trainable)
    names = [n for n, _ in unlearner.named if "parametrizations" in n]
    assert names and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in names)
    attn2 = sum(1 for n, _ in unlearner.unet.named_modules() if n.endswith(".attn2"))
    assert attn2 > 1 and len(names) == attn2 * (1 if trainable == "cross_attention_keys" else 2)
    g_f, g_r = separate_gradients(unlearner)  # by the trainer's own names: V for each whitened W
    unlearner.update_direction()
    expected = unlearning.restricted_gradient(g_f, g_r, unlearner.config.retain_weight)
    torch.testing.assert_close(unlearner.grads.buffer, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))


def test_a_run_ends_with_plain_weights_and_resumes_to_the_same(tmp_path):
    settings = {"key_value_whitening": 0.01, "steps": 4, "save_every": 1}
    whole = trainer("rg", 1.0, **settings)
    whole.run(unlearning.Callbacks(), None, "key")
    assert not any(parametrize.is_parametrized(m) for m in whole.unet.modules())
    assert not any("parametrizations" in n for n, _ in whole.unet.named_parameters())
    plain = trainer("rg", 1.0, steps=4)
    plain.run(unlearning.Callbacks(), None, "key")
    keys = [n for n, _ in whole.named if ".attn2.to_k." in n]
    assert keys and all(not torch.allclose(dict(whole.named)[n], dict(plain.named)[n]) for n in keys)
    state = tmp_path / "state.pt"
    with pytest.raises(unlearning.Stopped):
        trainer("rg", 1.0, **settings).run(stopping_after(2), state, "key")
    resumed = trainer("rg", 1.0, **settings)
    resumed.run(unlearning.Callbacks(), state, "key")
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(resumed.named, whole.named))


@pytest.mark.parametrize("value", [0.0, -1.0, 101.0, "yes"])
def test_a_bad_damping_is_refused_by_name(value):
    with pytest.raises(unlearning.InvalidInput) as error:
        make_config("rg", {"key_value_whitening": value})
    assert error.value.field == "hyperparameters.key_value_whitening"
