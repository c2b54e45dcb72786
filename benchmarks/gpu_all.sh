#!/usr/bin/env bash
# The whole GPU check in one run, for a lent machine: each benchmark under its own time limit,
# every JSON line collected in $OUT/gpu.jsonl (or ./gpu.jsonl). Check it first with TINY=1 on CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu.jsonl"
tiny=${TINY:+--tiny}
run() { timeout "$1" python "${@:2}" $tiny 2> >(tail -n 5 >&2) | tee -a "$out"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "${OUT:-.}/card.txt"
run 240 benchmarks/gpu_step.py
run 180 benchmarks/gpu_generation.py
run 420 benchmarks/gpu_job.py
