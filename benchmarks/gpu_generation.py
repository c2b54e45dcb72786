"""Generating training latents on an SD-1.5-sized pipeline: the library's path against the
reference style (fp16 weights, 50 steps, batch 20), images per second, in the same process.

    python benchmarks/gpu_generation.py [--tiny] [--batch 32] [--steps 25]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import sd15
from gpu_step import peak_gib, reset_peak, sync
from unlearning.latents import LatentCache, generate_latents, sample_seeds

PROMPTS = [f"a photo of a dog in a forest at night number {i}" for i in range(4096)]


def images_per_second(run, count: int, device) -> float:
    run(min(count, 8))  # warm-up
    sync(device)
    start = time.perf_counter()
    run(count)
    sync(device)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--images", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    facts = {**sd15.device_facts(device), "tiny": args.tiny}
    size = sd15.latent_size(args.tiny) * 8 if not args.tiny else 16
    with tempfile.TemporaryDirectory() as scratch:
        pipe = sd15.pipeline(args.tiny, Path(scratch)).to(device)
    pipe.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    settings = {"steps": args.steps, "guidance_scale": 7.5, "height": size, "width": size, "scheduler": "DDIM"}

    def library(count):
        prompts = PROMPTS[:count]
        generate_latents(pipe, prompts, sample_seeds(0, prompts), settings, LatentCache(None), "bench", args.batch)

    reset_peak(device)
    rate = images_per_second(library, args.images, device)
    sd15.emit({**facts, "what": "generation_library", "images_per_second": rate, "steps": args.steps,
               "batch": args.batch, "peak_gib": peak_gib(device)})

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe.to(dtype=dtype)

    @torch.no_grad()
    def reference(count):
        for start in range(0, count, 20):
            pipe(PROMPTS[start:start + 20][: count - start], num_inference_steps=50, guidance_scale=7.5,
                 height=size, width=size, output_type="latent")

    reset_peak(device)
    reference_rate = images_per_second(reference, args.images // 2, device)
    sd15.emit({**facts, "what": "generation_reference", "images_per_second": reference_rate, "steps": 50,
               "batch": 20, "peak_gib": peak_gib(device)})
    sd15.emit({**facts, "what": "speedup_generation", "ratio": rate / reference_rate})


if __name__ == "__main__":
    main()
