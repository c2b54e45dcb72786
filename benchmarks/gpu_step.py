"""One restricted-gradient step on an SD-1.5-sized UNet: the library's step against the
reference style of PERFORMANCE.md, in the same process. One JSON line per measurement.

    python benchmarks/gpu_step.py            # on a GPU
    python benchmarks/gpu_step.py --tiny     # the same code paths on a tiny UNet, on CPU
    python benchmarks/gpu_step.py --forget-loss-ceiling 0.01   # every step hinged (no forget backward)

The library's step runs with the hinge as configured (rg's default ceiling unless told), and
each record says how many of the timed steps were hinged: the peak memory of a hinged step
is only visible where some are.

Reference style (like the authors' code): fp32 with TF32 off, gradient checkpointing,
per-parameter gradient clones flattened with torch.cat, the update written back per parameter.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
import torch.nn.functional as F

import sd15
from unlearning.families import Conditioning
from unlearning.methods import make_config, validate
from unlearning.noise import TrainingNoise
from unlearning.train import TrainingData, Unlearner


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def random_data(tiny: bool, pairs: int) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    size, width = sd15.latent_size(tiny), 32 if tiny else 768
    latents = lambda: torch.randn(pairs, 4, size, size, generator=g)  # noqa: E731
    embeds = lambda: Conditioning(torch.randn(pairs, 77, width, generator=g))  # noqa: E731
    return TrainingData(latents(), embeds(), latents(), embeds(), embeds()[:1])


def timed(fn, device, warmup: int, repeat: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def library_step(args, device, low_memory: bool) -> dict:
    unet = sd15.unet(args.tiny).to(device)
    config = make_config("rg", {"batch_size": args.batch, "gradient_checkpointing": low_memory,
                                "forget_loss_ceiling": args.forget_loss_ceiling})
    noise = TrainingNoise(sd15.scheduler().config)
    unlearner = Unlearner(unet, noise, config, random_data(args.tiny, 4 * args.batch), 0, device)
    reset_peak(device)
    times = timed(unlearner.step, device, args.warmup, args.repeat)
    peak = peak_gib(device)
    projection = timed(lambda: project(unlearner), device, 1, args.repeat)
    timed_steps = unlearner.history[args.warmup:]
    record = {"what": "rg_step_library" + ("_low_memory" if low_memory else ""), "seconds": sd15.median(times),
              "projection_seconds": sd15.median(projection), "peak_gib": peak,
              "forget_loss_ceiling": config.forget_loss_ceiling, "timed_steps": len(timed_steps),
              "hinged_steps": sum(r["hinge"] for r in timed_steps),
              "trainable_parameters": unlearner.grads.buffer.numel()}
    del unlearner, unet
    return record


def project(unlearner: Unlearner) -> None:
    """The rule alone, as the step runs it: the Gram pass and the combination."""
    grads = unlearner.grads
    ff, rr, fr = grads.gram()
    grads.buffer.mul_(1.0).add_(grads.stash, alpha=1.0 if fr >= 0 else 1.0 - fr / ff)


def reference_step(args, device) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    unet = sd15.unet(args.tiny).to(device)
    unet.enable_gradient_checkpointing()
    unet.train()
    params = list(unet.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-5)
    scheduler = sd15.scheduler()
    data = random_data(args.tiny, args.batch)

    def loss(latents, embeds):
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (latents.shape[0],), device=device)
        pred = unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=embeds).sample
        return F.mse_loss(pred, noise)

    forget = (data.forget_latents.to(device), data.forget_conditioning.encoder_hidden_states.to(device))
    retain = (data.retain_latents.to(device), data.retain_conditioning.encoder_hidden_states.to(device))

    def step():
        optimizer.zero_grad()
        (-loss(*forget)).backward()
        g_f = torch.cat([p.grad.clone().flatten() for p in params])
        optimizer.zero_grad()
        loss(*retain).backward()
        g_r = torch.cat([p.grad.clone().flatten() for p in params])
        dot = g_f @ g_r
        if dot < 0:
            f_hat, r_hat = g_f - dot / (g_r @ g_r) * g_r, g_r - dot / (g_f @ g_f) * g_f
        else:
            f_hat, r_hat = g_f, g_r
        d = f_hat + 1.6 * r_hat
        offset = 0
        for p in params:
            p.grad.copy_(d[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        optimizer.step()

    reset_peak(device)
    times = timed(step, device, args.warmup, args.repeat)
    record = {"what": "rg_step_reference", "seconds": sd15.median(times), "peak_gib": peak_gib(device)}
    del unet, optimizer
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return record


def ceiling(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny UNet, to check the script on CPU")
    parser.add_argument("--batch", type=int, default=8, help="forget samples per step (and as many retain)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--forget-loss-ceiling", type=ceiling, default=validate("rg")["forget_loss_ceiling"],
                        help="the hinge of the library's step ('none': never hinged); default rg's")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    facts = {**sd15.device_facts(device), "batch": args.batch, "tiny": args.tiny}
    records = [library_step(args, device, low_memory=False), library_step(args, device, low_memory=True)]
    if not args.skip_reference:
        records.append(reference_step(args, device))
    for record in records:
        sd15.emit({**facts, **record})
    if not args.skip_reference:
        reference = records[-1]["seconds"]
        for record in records[:-1]:
            sd15.emit({**facts, "what": f"speedup_{record['what']}", "ratio": reference / record["seconds"],
                       "projection_share": record["projection_seconds"] / record["seconds"]})


if __name__ == "__main__":
    main()
