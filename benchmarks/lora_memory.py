"""Memory of a restricted-gradient run: the whole UNet trained against a LoRA adapter.

Computed, not measured: for the SD-1.5 and SDXL-base UNets, built from their configs on the
meta device (nothing is allocated), the parameter counts N (UNet) and n (the adapter that
`trainable: "lora"` adds, default targets, per rank), and from them the fp32 bytes that a run
keeps besides activations:
- full UNet: the weights (4N), the two gradient rows of the rule (8N; the second row is the
  weights' .grad) and Adam's two moments (8N): 20N;
- LoRA: the same 20n for the adapter, plus the frozen UNet weights (4N), which are only read.
Measured, on this CPU: the same runs on the tiny SD and SDXL UNets of `unlearning.tiny`, each in
a fresh process with one torch thread: the median step time (batch 2 + 2, no hinge), the bytes of the tensors the trainer really holds
(trainable weights, gradient rows, Adam state; the formula above is checked against them), and
the process's peak resident memory over the steps less its resident memory between two steps:
what a step allocates and frees (activations, Adam's temporaries, the rule's fp64 Gram block).

    python benchmarks/lora_memory.py --json benchmarks/lora_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from unlearning.families import Conditioning
from unlearning.lora import lora_config
from unlearning.methods import make_config
from unlearning.noise import TrainingNoise
from unlearning.tiny import tiny_sdxl_unet, tiny_unet
from unlearning.train import TrainingData, Unlearner

SD15 = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
SDXL = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
RANKS = (4, 8, 16)
FP32 = 4
COPIES = 5  # weights, the rule's two gradient rows (one is .grad), Adam's two moments
GB = 1e9


def counts(config: dict, rank: int) -> tuple[int, int]:
    """(N, n): the UNet's parameters and the adapter's, on the meta device."""
    settings = make_config("rg", {"trainable": "lora", "lora_rank": rank})
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        whole = sum(p.numel() for p in unet.parameters())
        unet.add_adapter(lora_config(settings))
    adapter = sum(p.numel() for name, p in unet.named_parameters() if ".lora_" in name)
    return whole, adapter


def state_bytes(whole: int, adapter: int | None) -> dict:
    """fp32 bytes a run keeps besides activations (adapter None: the whole UNet trains): five
    copies of what trains (weights, two gradient rows, two Adam moments), and for LoRA the UNet's
    frozen weights once."""
    if adapter is None:
        return {"trainable_state_bytes": COPIES * FP32 * whole, "resident_bytes": COPIES * FP32 * whole}
    return {"trainable_state_bytes": COPIES * FP32 * adapter, "resident_bytes": FP32 * whole + COPIES * FP32 * adapter,
            "adapter_file_bytes_fp32": FP32 * adapter}


def computed() -> list[dict]:
    rows = []
    for name, config in (("SD-1.5", SD15), ("SDXL-base", SDXL)):
        whole, _ = counts(config, RANKS[0])
        rows.append({"unet": name, "trainable": "unet", "parameters": whole, **state_bytes(whole, None)})
        for rank in RANKS:
            _, adapter = counts(config, rank)
            rows.append({"unet": name, "trainable": "lora", "rank": rank, "parameters": adapter,
                         "unet_parameters": whole, **state_bytes(whole, adapter)})
    return rows


def tiny_run(family: str, trainable: str, steps: int) -> dict:
    """One configuration's measurement; run in its own process (`--measure`)."""
    torch.manual_seed(0)
    unet = tiny_unet() if family == "sd" else tiny_sdxl_unet((32, 48), pooled_width=24)
    g = torch.Generator().manual_seed(0)
    text = lambda: Conditioning(  # noqa: E731
        torch.randn(8, 77, unet.config.cross_attention_dim, generator=g),
        {} if family == "sd" else {"text_embeds": torch.randn(8, 24, generator=g), "time_ids": torch.full((8, 6), 16.0)})
    data = TrainingData(torch.randn(8, 4, 8, 8, generator=g), text(), torch.randn(8, 4, 8, 8, generator=g), text(), text()[:1])
    noise = TrainingNoise(DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).config)
    config = make_config("rg", {"batch_size": 2, "learning_rate": 1e-4, "trainable": trainable,
                                "forget_loss_ceiling": None})  # no hinge: every step takes both passes
    unlearner = Unlearner(unet, noise, config, data, 0, torch.device("cpu"))
    unlearner.step()  # Adam's moments exist from the first step on
    between_steps = resident_kib()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        unlearner.step()
        times.append(time.perf_counter() - start)
    transient = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - between_steps  # both KiB
    trainable_numel = sum(p.numel() for _, p in unlearner.named)
    held = (sum(p.numel() * p.element_size() for _, p in unlearner.named) + tensor_bytes(unlearner.grads.rows)
            + sum(tensor_bytes(t) for s in unlearner.optimizer.state.values() for t in s.values() if t.dim() > 0))
    return {"unet": f"tiny {family}", "trainable": trainable, "trainable_parameters": trainable_numel,
            "unet_parameters": sum(p.numel() for n, p in unet.named_parameters() if ".lora_" not in n),
            "step_seconds": statistics.median(times), "steps": steps, "held_state_bytes": held,
            "formula_bytes": COPIES * FP32 * trainable_numel, "step_transient_kib": transient}


def tensor_bytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measured(steps: int) -> list[dict]:
    rows = []
    for family in ("sd", "sdxl"):
        for trainable in ("unet", "lora"):
            out = subprocess.run([sys.executable, __file__, "--measure", family, trainable, "--steps", str(steps)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def markdown(computed_rows: list[dict], measured_rows: list[dict]) -> str:
    lines = ["| UNet (computed) | trains | parameters | trainable state | resident (+ activations) |", "|---|---|---|---|---|"]
    for r in computed_rows:
        trains = "whole UNet" if r["trainable"] == "unet" else f"LoRA rank {r['rank']}"
        lines.append(f"| {r['unet']} | {trains} | {r['parameters'] / 1e6:.1f} M | "
                     f"{r['trainable_state_bytes'] / GB:.2f} GB | {r['resident_bytes'] / GB:.2f} GB |")
    lines += ["", "| UNet (measured, CPU) | trains | parameters | held state | formula | step (s) | step's transient peak |",
              "|---|---|---|---|---|---|---|"]
    for r in measured_rows:
        lines.append(f"| {r['unet']} | {r['trainable']} | {r['trainable_parameters']:,} | {r['held_state_bytes']:,} B | "
                     f"{r['formula_bytes']:,} B | {r['step_seconds']:.3f} | {r['step_transient_kib']:,} KiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per tiny configuration")
    parser.add_argument("--json", type=Path, default=Path("lora_memory.json"))
    parser.add_argument("--measure", nargs=2, metavar=("FAMILY", "TRAINABLE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(tiny_run(*args.measure, args.steps)))
        return 0
    computed_rows, measured_rows = computed(), measured(args.steps)
    table = markdown(computed_rows, measured_rows)
    print(table)
    args.json.write_text(json.dumps({
        "command": "python benchmarks/lora_memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "computed": computed_rows, "measured_on_cpu": measured_rows, "measured_threads": 1,
        "markdown": table,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
