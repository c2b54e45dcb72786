"""The robust mode of the gradient methods (rg, graddiff, ga), after AdvUnlearn (Zhang et al.,
NeurIPS 2024), on our loop: every `adversarial_every` steps, on the current weights, learn a
soft prompt that calls the concept back (the audit's attack, `unlearning.audit.attack`), then
train against it until the next search. Each step's forget batch is doubled: the batch's
latents under their own prompts, and the same latents under the learned conditioning (the
adversarial rows, replaced at each search), each half hinged on its own loss. With the anchor
(`forget_target: "anchor"`) the second half holds the learned rows to the original model's
prediction for the empty prompt they start from, and the empty prompt to its own (`anchor.py`,
`learned_rows_loss`): no hinge.

The search starts from the unconditional prompt, as the audit's attack starts from a sentence
without the concept, and its targets are the forget set's own latents (the original model's
images of the concept). No torch at import (the gateway imports the method modules).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from .anchor import learned_rows_loss

SEARCH_TOKENS = 4  # learned vectors, as the quick audit's attack
SEARCH_LEARNING_RATE = 0.2
SEARCH_BATCH = 8  # target latents per search step


class Adversary:
    """The latest search's learned conditioning (one row) and the loss of the adversarial rows."""

    def __init__(self, config: Any, trainer: Any):
        self.config, self.trainer = config, trainer
        self.found = None  # Conditioning (1 row, on the CPU) once the first search has run

    def loss(self, batch, record: dict, original: dict | None = None, guidance: float = 0.0):
        """The batch's loss under the learned conditioning: the denoising loss of its latents, or with
        the `original` weights the distance to the empty prompt's prediction. A search first on the
        steps that start a period (its final attack loss goes into `record`)."""
        from ..train import seeded_generator

        trainer = self.trainer
        if trainer.step_index % self.config.adversarial_every == 0 or self.found is None:
            self.found, losses = self.search()
            record["search_loss"] = losses[-1]
        generator = seeded_generator(trainer.seed, "adversarial", trainer.step_index)  # the step's own draws stay as they are
        rows = self.found.expand(len(batch))
        if original is not None:
            return learned_rows_loss(trainer, original, batch, generator, rows, guidance)
        return trainer.denoising_loss(trainer.data.forget_latents[batch], rows, generator)

    def search(self):
        """A soft prompt learned on the current weights (frozen for it) against the forget latents."""
        from ..audit.attack import soft_prompt
        from ..train import seeded_generator

        trainer = self.trainer
        seed = seeded_generator(trainer.seed, "adversarial search", trainer.step_index).initial_seed()
        with frozen(trainer):
            learned, losses = soft_prompt(trainer.unet, trainer.noise, trainer.data.unconditional,
                                          drawn(trainer.data.forget_latents), steps=self.config.adversarial_steps,
                                          tokens=SEARCH_TOKENS, learning_rate=SEARCH_LEARNING_RATE,
                                          batch_size=SEARCH_BATCH, seed=seed)
        return learned.to("cpu"), losses

    def state_dict(self) -> dict:
        if self.found is None:
            return {}
        return {"encoder_hidden_states": self.found.encoder_hidden_states, "added": dict(self.found.added)}

    def load_state_dict(self, state: dict) -> None:
        from ..families import Conditioning

        if state:
            self.found = Conditioning(state["encoder_hidden_states"], dict(state["added"]))


def drawn(latents):
    """The rows the run drew (`unlearning.api` leaves the rows no step reaches NaN)."""
    return latents[~latents.flatten(1).isnan().any(dim=1)]


@contextmanager
def frozen(trainer: Any):
    """The trainer's UNet in eval mode with no parameter taking gradients: a search learns its
    prompt alone and leaves the gradient buffer (the parameters' .grad) untouched."""
    unet, params = trainer.unet, [p for _, p in trainer.named]
    training = unet.training
    unet.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        unet.train(training)
