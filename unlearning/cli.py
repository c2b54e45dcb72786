"""`python -m unlearning erase ...`: one erasure from the command line.

A user's mistake is one line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import InvalidInput, Stopped

USAGE_ERROR = 2


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "lethe"


def parser() -> argparse.ArgumentParser:
    from .audit import AUDIT_MODES, DEFAULT_AUDIT
    from .methods import DEFAULT_METHOD, METHOD_IDS
    from .methods.base import TRAINABLE_SETS

    top = argparse.ArgumentParser(prog="python -m unlearning", description="Erase concepts from a Stable Diffusion (1.x, 2.x, XL) pipeline folder.")
    commands = top.add_subparsers(dest="command", required=True)
    erase = commands.add_parser("erase", help="erase one or more concepts and write a new pipeline folder")
    erase.add_argument("--base", required=True, type=Path,
                       help="a local diffusers folder: Stable Diffusion 1.x, 2.x or XL (base), safetensors weights")
    erase.add_argument("--allow-pickle", action="store_true",
                       help="also load pickle weights (.bin, .ckpt, .pt), which run code when loaded: only for a folder you trust")
    erase.add_argument("--concept", required=True, action="append", dest="concepts", help="a concept to erase (repeatable)")
    erase.add_argument("--preserve", action="append", default=[], help="a related concept to keep (repeatable)")
    erase.add_argument("--synonym", action="append", default=[], help="another name of the concept (repeatable)")
    erase.add_argument("--forget-prompts", type=Path, help="a text file of extra forget prompts, one per line")
    erase.add_argument("--retain-prompts", type=Path, help="a text file of extra retain prompts, one per line")
    erase.add_argument("--method", default=DEFAULT_METHOD, choices=METHOD_IDS)
    erase.add_argument("--steps", type=int, help="optimizer steps (method default otherwise)")
    erase.add_argument("--learning-rate", type=float)
    erase.add_argument("--batch-size", type=int)
    erase.add_argument("--num-prompts", type=int)
    erase.add_argument("--trainable", choices=TRAINABLE_SETS,
                       help="which UNet parameters change; lora trains a low-rank adapter, written under lora/ "
                            "(diffusers and kohya files) and fused into the result's UNet")
    erase.add_argument("--lora-rank", type=int, help="rank of the LoRA adapter (with --trainable lora)")
    erase.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any other hyperparameter, as JSON (repeatable)")
    erase.add_argument("--seed", type=int, default=0)
    erase.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="latents cache (default: %(default)s)")
    erase.add_argument("--state-dir", type=Path, help="save a resumable state here; a rerun with the same arguments resumes")
    erase.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    erase.add_argument("--audit", default=DEFAULT_AUDIT, choices=AUDIT_MODES,
                       help="judge the result with the original model: leaks, a soft-prompt attack, neighbours, "
                            "collapse (default: %(default)s; full: more prompts and a longer attack)")
    erase.add_argument("--out", required=True, type=Path, help="the result folder (must not exist, or be empty)")
    return top


def hyperparameters(args) -> dict:
    values = {}
    for name in ("steps", "learning_rate", "batch_size", "num_prompts", "trainable", "lora_rank"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep:
            raise InvalidInput("--set", f"expected NAME=VALUE, got {item!r}")
        try:
            values[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[name.strip()] = raw
    return values


def user_prompts(args) -> dict | None:
    prompts = {}
    for key, path in (("forget", args.forget_prompts), ("retain", args.retain_prompts)):
        if path is not None:
            try:
                prompts[key] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            except OSError as error:
                raise InvalidInput(f"--{key}-prompts", f"cannot read {path}: {error.strerror}") from None
    if args.synonym:
        prompts["synonyms"] = args.synonym
    return prompts or None


class ProgressBars:
    """One tqdm bar per stage, fed by the library's progress callback."""

    def __init__(self):
        from tqdm import tqdm

        self.tqdm, self.bar, self.stage = tqdm, None, None

    def __call__(self, stage: str, step: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, self.tqdm(total=total, desc=f"{stage:<11}", unit="step" if stage == "unlearning" else "it", leave=True)
        self.bar.total = total
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def quiet_libraries() -> None:
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_erase(args) -> int:
    from .job import prepare_job

    # Check everything before the heavy imports, so a mistake is answered at once.
    job = prepare_job(args.base, args.concepts, args.out, args.method, args.preserve, user_prompts(args),
                      hyperparameters(args), args.seed, args.allow_pickle, args.audit)
    print(settings_line(job.config), file=sys.stderr)
    from .api import erase
    from .callbacks import Callbacks

    quiet_libraries()
    bars = ProgressBars()
    started = time.perf_counter()
    try:
        result = erase(
            args.base, args.concepts, args.out, method=args.method, preserve=args.preserve,
            prompts=user_prompts(args), hyperparameters=hyperparameters(args), seed=args.seed,
            cache_dir=args.cache_dir, state_dir=args.state_dir, device=args.device,
            callbacks=Callbacks(on_progress=bars), allow_pickle=args.allow_pickle, audit=args.audit,
        )
    finally:
        bars.close()
    print(summary(result, time.perf_counter() - started))
    return 0


def settings_line(config) -> str:
    """The settings that differ from the method's own defaults: what the model's lethe.json and
    --set chose, which the run would otherwise show only in its manifest."""
    from .methods import make_config

    own = make_config(config.method).to_dict()
    chosen = [f"{k} {v}" for k, v in config.to_dict().items() if own.get(k) != v]
    return f"settings over {config.method}'s defaults: {', '.join(chosen) or 'none'}"


def summary(result, seconds: float) -> str:
    m = result.metrics
    last = result.history[-1] if result.history else {}
    lines = [
        f"erased {', '.join(result.manifest['concepts'])} with {result.manifest['method']} in {seconds:.1f} s "
        + "(" + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()) + ")",
        f"held-out forget loss {m['forget_loss_before']:.4f} -> {m['forget_loss_after']:.4f}; "
        f"retain loss {m['retain_loss_before']:.4f} -> {m['retain_loss_after']:.4f}",
        "last step: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float)),
        audit_line(result.audit),
        f"pipeline: {result.out}   delta: {result.out / 'delta.safetensors'}   evaluation: {result.out / 'evaluation'}",
    ]
    if "lora" in result.manifest:
        adapter = result.manifest["lora"]
        lines.append(f"LoRA adapter (rank {adapter['rank']}): diffusers {result.out / adapter['diffusers']}   "
                     f"A1111/ComfyUI {result.out / adapter['kohya']}")
    return "\n".join(lines)


def audit_line(audit: dict) -> str:
    if audit["mode"] == "off":
        return "audit: off"
    if audit.get("status") != "done":
        return f"audit: {audit['warning']}"
    from .audit.run import summary as audit_summary

    return audit_summary(audit)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = parser().parse_args(argv)
    try:
        return run_erase(args)
    except InvalidInput as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except Stopped as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
