"""LoRA erasure on the digits model, and the same adapter on another fine-tune of that base.

For each seed, forget one digit (seven by default) three ways and judge 50 images per digit
drawn with the stock pipeline call (50 DDIM steps, guidance 7.5), as benchmarks/digits_table.py:

- full: restricted gradient on the whole UNet, the model's defaults (models/digits/lethe.json);
- lora: restricted gradient on a LoRA adapter (`trainable: "lora"`), its fused result folder;
- transfer: that adapter's diffusers file, `load_lora_weights` on a DIFFERENT fine-tune of the
  same base (the base's UNet trained further on the digits for `--fine-tune-steps` steps with
  the training code of unlearning/digits/train.py, other seed, text encoder and VAE unchanged;
  written to a temporary folder and deleted at the end);
- and the two models untouched (original, fine-tune), for reference.

UA = 1 - the share of the forgotten digit's images the judge still reads as it; RA = the mean
share read as asked over the nine others. Sizes: the adapter files against the UNet's weights.

    python benchmarks/lora_transfer.py --seeds 0 1 2 --json benchmarks/lora_transfer.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import unlearning
from unlearning.digits.data import CLASSES, load_split, pixels_to_images
from unlearning.digits.sampling import accuracy_by_digit, draw_digits, load_pipeline
from unlearning.digits.train import TrainingConfig, _batches, _prompt_rows, _prompt_table

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
LORA_SETTINGS = {"trainable": "lora", "lora_rank": 8, "learning_rate": 3e-4}


def fine_tune(model: Path, out: Path, steps: int, seed: int, learning_rate: float) -> dict:
    """`model` with its UNet trained `steps` more steps on the generator's digits, as
    unlearning/digits/train.py trains it (same prompts, empty-prompt share, loss, clipping),
    the text encoder and VAE frozen. Returns how far the UNet moved."""
    started = time.perf_counter()
    shutil.copytree(model, out)
    pipe = load_pipeline(model)
    unet, config = pipe.unet.train(), TrainingConfig(seed=seed)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    split, rng = load_split(), np.random.default_rng(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        posterior = pipe.vae.encode(torch.from_numpy(pixels_to_images(split.generator.pixels))).latent_dist
        token_ids, empty_row = _prompt_table(pipe.tokenizer)
    labels, scaling = torch.from_numpy(split.generator.labels), pipe.vae.config.scaling_factor
    unet.requires_grad_(True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=1e-4)
    for index in _batches(len(labels), config.batch_size, steps, rng):
        latents = (posterior.mean[index] + posterior.std[index] * torch.randn_like(posterior.mean[index])) * scaling
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (len(index),))
        with torch.no_grad():
            context = pipe.text_encoder(token_ids[_prompt_rows(labels[index], config, empty_row, rng)])[0]
        loss = F.mse_loss(unet(pipe.scheduler.add_noise(latents, noise, timesteps), timesteps, context).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
    shutil.rmtree(out / "unet")
    unet.eval().save_pretrained(out / "unet", safe_serialization=True)
    moved = torch.cat([(p.detach() - before[n]).flatten() for n, p in unet.named_parameters()]).norm()
    size = torch.cat([p.flatten() for p in before.values()]).norm()
    return {"steps": steps, "seed": seed, "learning_rate": learning_rate, "final_loss": loss.item(),
            "relative_weight_change": (moved / size).item(), "seconds": time.perf_counter() - started}


def judged(pipe, digit: int, seed: int, per_digit: int) -> dict:
    accuracy = accuracy_by_digit(draw_digits(pipe, range(10), per_digit, seed))
    return {"UA": 1.0 - accuracy[digit], "RA": float(np.mean([a for d, a in accuracy.items() if d != digit])),
            "accuracy": {CLASSES[d]: a for d, a in accuracy.items()}}


def erase(model: Path, digit: int, seed: int, out: Path, hyperparameters: dict | None, cache: Path):
    started = time.perf_counter()
    result = unlearning.erase(model, [CLASSES[digit]], out, seed=seed, hyperparameters=hyperparameters, cache_dir=cache)
    return result, {"seconds": time.perf_counter() - started, "loop_seconds": result.seconds["unlearning"],
                    "config": result.manifest["config"]}


def adapter_sizes(result) -> dict:
    sizes = {f["path"]: f["size"] for f in result.manifest["files"]}
    unet = sizes[UNET_FILE]
    lora = result.manifest["lora"]
    return {"unet_bytes": unet, "parameters": lora["parameters"], "rank": lora["rank"],
            "diffusers_bytes": sizes[lora["diffusers"]], "kohya_bytes": sizes[lora["kohya"]],
            "diffusers_share": sizes[lora["diffusers"]] / unet, "kohya_share": sizes[lora["kohya"]] / unet}


def one_seed(model: Path, tuned: Path, digit: int, seed: int, per_digit: int, work: Path) -> list[dict]:
    rows = []

    def row(name: str, scores: dict, **extra) -> None:
        rows.append({"model": name, "digit": digit, "seed": seed, **scores, **extra})
        print(f"  {name:<9} seed {seed}: UA {scores['UA']:.2f} RA {scores['RA']:.3f}", file=sys.stderr, flush=True)

    row("original", judged(load_pipeline(model), digit, seed, per_digit))
    row("fine-tune", judged(load_pipeline(tuned), digit, seed, per_digit))
    full, timing = erase(model, digit, seed, work / f"full-{seed}", None, work / "cache")
    row("full", judged(load_pipeline(full.out), digit, seed, per_digit), **timing)
    shutil.rmtree(full.out)
    lora, timing = erase(model, digit, seed, work / f"lora-{seed}", LORA_SETTINGS, work / "cache")
    row("lora", judged(load_pipeline(lora.out), digit, seed, per_digit), **timing, sizes=adapter_sizes(lora))
    on_tuned = load_pipeline(tuned)
    on_tuned.load_lora_weights(lora.out / "lora")  # the diffusers file, on a model it was not trained on
    row("transfer", judged(on_tuned, digit, seed, per_digit), adapter=lora.manifest["lora"]["diffusers"])
    shutil.rmtree(lora.out)
    return rows


def spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def markdown(rows: list[dict]) -> str:
    lines = ["| model | UA ↑ | RA ↑ | loop (s) | runs |", "|---|---|---|---|---|"]
    for name in ("original", "fine-tune", "full", "lora", "transfer"):
        mine = [r for r in rows if r["model"] == name]
        loop = spread([r["loop_seconds"] for r in mine], 0) if "loop_seconds" in mine[0] else "–"
        lines.append(f"| {name} | {spread([r['UA'] for r in mine], 2)} | {spread([r['RA'] for r in mine], 3)} | "
                     f"{loop} | {len(mine)} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    mean = lambda name, key: statistics.fmean(r[key] for r in rows if r["model"] == name)  # noqa: E731
    sizes = [r["sizes"] for r in rows if r["model"] == "lora"]
    return {
        "lora_UA": mean("lora", "UA"), "transfer_UA": mean("transfer", "UA"),
        "RA_gap_full_minus_lora": mean("full", "RA") - mean("lora", "RA"),
        "RA_gap_fine_tune_minus_transfer": mean("fine-tune", "RA") - mean("transfer", "RA"),
        "largest_adapter_share": max(max(s["diffusers_share"], s["kohya_share"]) for s in sizes),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/digits"))
    parser.add_argument("--digit", type=int, default=7)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-digit", type=int, default=50)
    parser.add_argument("--fine-tune-steps", type=int, default=300)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=2e-4)
    parser.add_argument("--fine-tune-seed", type=int, default=1234)
    parser.add_argument("--json", type=Path, default=Path("lora_transfer.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lora-transfer-") as scratch:
        work = Path(scratch)
        tuned = work / "fine-tune"
        tuning = fine_tune(args.model, tuned, args.fine_tune_steps, args.fine_tune_seed, args.fine_tune_learning_rate)
        print(f"fine-tune: {json.dumps(tuning)}", file=sys.stderr, flush=True)
        rows = [r for seed in args.seeds for r in one_seed(args.model, tuned, args.digit, seed, args.per_digit, work)]
    table = markdown(rows)
    print(table)
    print(json.dumps(summary(rows), indent=2))
    args.json.write_text(json.dumps({
        "command": "python benchmarks/lora_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model), "digit": args.digit, "seeds": args.seeds, "per_digit": args.per_digit,
        "lora_settings": LORA_SETTINGS, "fine_tune": tuning, "summary": summary(rows), "rows": rows,
        "markdown": table,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
