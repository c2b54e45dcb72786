"""Every stage of a run reports progress beyond its start (counted, never timed), and a UNet
forward pass repeats the last progress once it is old (the Heartbeat)."""

from __future__ import annotations

from collections import defaultdict

import torch

import unlearning
from unlearning.callbacks import Callbacks, Heartbeat

SHORT = {"steps": 4, "num_prompts": 8, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
         "eval_prompts": 2, "learning_rate": 1e-3}


def test_each_stage_reports_more_than_its_start(tiny_base, tmp_path):
    steps, totals, events = defaultdict(list), defaultdict(set), []

    def progress(stage: str, step: int, total: int) -> None:
        if steps[stage][-1:] != [step]:  # a repeat (the Heartbeat's, if the machine is slow) adds nothing
            steps[stage].append(step)
        totals[stage].add(total)

    callbacks = Callbacks(on_progress=progress, on_event=lambda type, message, data: events.append(data))
    unlearning.erase(tiny_base, ["van gogh"], tmp_path / "out", hyperparameters=SHORT, cache_dir=tmp_path / "cold",
                     callbacks=callbacks, audit="off")
    assert steps["preparing"][:4] == [0, 1, 2, 3] and totals["preparing"] == {3, 20}  # set-up, then the latents
    # 20 latents (8 pairs, 2 x 2 held out) in batches of 8, 8 and 4, each reported at both of its 2 sampler steps
    assert steps["preparing"][4:] == [0, 4, 8, 12, 16, 18, 20]
    assert steps["evaluating"] == [0, 1, 2, 3, 4, 5, 6, 7, 8] and totals["evaluating"] == {8}
    assert steps["unlearning"] == [0, 1, 2, 3, 4] and steps["writing"] == [0, 1]
    assert {"latents_cached": 0, "latents_drawn": 20} in events


def test_a_forward_pass_repeats_the_last_progress_once_it_is_old():
    now, calls = [0.0], []
    heartbeat = Heartbeat(Callbacks(on_progress=lambda *progress: calls.append(progress)), every_s=1.0,
                          clock=lambda: now[0])
    layer = torch.nn.Linear(2, 2)
    heartbeat.attach(layer)
    layer(torch.zeros(1, 2))  # nothing reported yet: nothing to repeat
    heartbeat.callbacks.on_progress("auditing", 2, 5)
    layer(torch.zeros(1, 2))  # just reported
    now[0] = 1.5
    layer(torch.zeros(1, 2))
    layer(torch.zeros(1, 2))  # repeated a moment ago
    assert calls == [("auditing", 2, 5), ("auditing", 2, 5)]
