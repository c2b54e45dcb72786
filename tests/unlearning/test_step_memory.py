"""What the trainer keeps alive: activations across the retain pass, state after the run,
ESD's frozen original, and the saved resumable state."""

from __future__ import annotations

import copy
import weakref
from collections import Counter

import pytest
import torch
from diffusers import DDIMScheduler

from unlearning import Callbacks
from unlearning.families import Conditioning
from unlearning.methods import make_config
from unlearning.noise import TrainingNoise
from unlearning.tiny import tiny_unet
from unlearning.train import TrainingData, Unlearner

CPU = torch.device("cpu")


def random_data(pairs: int = 4) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    latents = lambda: torch.randn(pairs, 4, 8, 8, generator=g)  # noqa: E731
    text = lambda: Conditioning(torch.randn(pairs, 6, 32, generator=g))  # noqa: E731
    return TrainingData(latents(), text(), latents(), text(), text()[:1])


def trainer(method: str = "rg", **settings) -> Unlearner:
    torch.manual_seed(0)
    noise = TrainingNoise(DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).config)
    config = make_config(method, {"batch_size": 2, "learning_rate": 1e-3, **settings})
    return Unlearner(tiny_unet(), noise, config, random_data(), 0, CPU)


class SavedActivations:
    """Bytes of the distinct storages autograd keeps for backward passes, alive now; parameters
    (kept by the model anyway) are not counted. `peak` is the most since the last `restart`."""

    def __init__(self, params):
        self.parameters = {p.untyped_storage().data_ptr() for p in params}
        self.holders: Counter[int] = Counter()
        self.live = self.peak = 0

    def restart(self) -> None:
        self.peak = self.live

    def pack(self, tensor):
        key = tensor.untyped_storage().data_ptr()
        # Detached: a kept output with its grad_fn would make a cycle (node -> kept -> tensor -> node).
        return tensor if key in self.parameters else _Kept(self, tensor.detach(), key)

    @staticmethod
    def unpack(kept):
        return kept.tensor if isinstance(kept, _Kept) else kept

    def change(self, key: int, nbytes: int, count: int) -> None:
        if self.holders[key] == 0 and count > 0:
            self.live += nbytes
        self.holders[key] += count
        if self.holders[key] == 0:
            self.live -= nbytes
        self.peak = max(self.peak, self.live)


class _Kept:
    """A saved tensor as the graph holds it: counted while the graph holds it."""

    def __init__(self, meter: SavedActivations, tensor, key: int):
        self.meter, self.tensor, self.key, self.nbytes = meter, tensor, key, tensor.untyped_storage().nbytes()
        meter.change(key, self.nbytes, +1)

    def __del__(self):
        self.meter.change(self.key, self.nbytes, -1)


def retain_pass_activations(unlearner: Unlearner) -> tuple[int, int]:
    """(bytes kept for backward when the retain forward starts, the most kept during the retain pass)."""
    meter = SavedActivations(p for _, p in unlearner.named)
    forwards, at_start = [], []

    def on_forward(module, args):
        forwards.append(None)
        if len(forwards) == 2:  # the forget forward, then the retain forward
            at_start.append(meter.live)
            meter.restart()

    hook = unlearner.unet.register_forward_pre_hook(on_forward)
    try:
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
            unlearner.step()
    finally:
        hook.remove()
    assert len(forwards) == 2 and meter.live == 0
    return at_start[0], meter.peak


def test_a_hinged_step_frees_the_forget_graph_before_the_retain_pass():
    normal, hinged = trainer(forget_loss_ceiling=None), trainer(forget_loss_ceiling=1e-6)
    normal_start, normal_peak = retain_pass_activations(normal)
    hinged_start, hinged_peak = retain_pass_activations(hinged)
    assert hinged.history[-1]["hinge"] and not normal.history[-1]["hinge"]
    assert normal_peak > 1e5  # the meter sees the retain pass's activations
    assert hinged_start == normal_start == 0
    assert hinged_peak <= normal_peak


@pytest.mark.parametrize("method", ["rg", "ga", "esd"])
def test_the_run_releases_gradients_optimizer_state_and_frozen_copies(method):
    unlearner = trainer(method, steps=2)
    unlearner.step()
    held = [unlearner.grads.rows, *(t for s in unlearner.optimizer.state.values() for t in s.values() if t.dim())]
    held += list(getattr(unlearner.method, "frozen", {}).values())
    alive = [weakref.ref(t) for t in held]
    del held
    unlearner.run(Callbacks(), None, "key")
    assert len(unlearner.history) == 2
    assert all(ref() is None for ref in alive)
    assert all(p.grad is None and not p.requires_grad for _, p in unlearner.named)
    assert not unlearner.unet.training


def test_esd_keeps_only_the_trainable_tensors_and_its_target_is_the_originals():
    unlearner = trainer("esd")  # ESD-x: cross-attention only
    original = copy.deepcopy(unlearner.unet).eval()
    assert unlearner.method.frozen.keys() == {n for n, _ in unlearner.named}
    assert all(".attn2." in n for n in unlearner.method.frozen)
    for _ in range(3):
        unlearner.step()
    assert any(not torch.equal(p, original.get_parameter(n)) for n, p in unlearner.named)
    z_t, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), unlearner.data.forget_conditioning[:2]
    frozen = unlearner.prediction(z_t, t, text, weights=unlearner.method.frozen)
    with torch.no_grad():
        assert torch.equal(frozen, original(z_t, t, **text.unet_inputs()).sample)
    assert unlearner.unet.training and frozen.grad_fn is None


def test_a_saved_state_holds_the_trainable_tensors_once(tmp_path):
    unlearner = trainer(trainable="cross_attention")
    unlearner.step()
    unlearner.save_state(tmp_path / "state.pt", "key")
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # written beside, then renamed
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["params"].keys() == {n for n, _ in unlearner.named} and state["step"] == 1
    for name, p in unlearner.named:
        saved = state["params"][name]
        assert torch.equal(saved, p) and saved.untyped_storage().nbytes() == p.numel() * p.element_size()
