"""A whole default job through the library on an SD-1.5-sized random pipeline: prompt sets,
800 + 800 latents, 100 steps, evaluation, writing the result. Then a second job on the same
base with another learning rate, whose latents come from the cache.

    python benchmarks/gpu_job.py [--tiny] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

import sd15
import unlearning


TINY = {"num_prompts": 16, "steps": 4, "batch_size": 2, "generation_steps": 2, "eval_prompts": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    facts = {**sd15.device_facts(device), "tiny": args.tiny}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lethe-job-"))
    base = work / "base"
    if not base.exists():
        start = time.perf_counter()
        sd15.pipeline(args.tiny, work / "scratch").save_pretrained(base, safe_serialization=True)
        sd15.emit({**facts, "what": "write_base_model", "seconds": time.perf_counter() - start})
    settings = TINY if args.tiny else {}
    for label, extra in (("job_cold_cache", {}), ("job_warm_cache", {"learning_rate": 2e-5})):
        out = work / label
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = unlearning.erase(base, ["van gogh"], out, hyperparameters={**settings, **extra},
                                  cache_dir=work / "cache", device=device)
        total = time.perf_counter() - start
        sd15.emit({**facts, "what": label, "seconds": total, "stages": result.seconds, "metrics": result.metrics})
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
