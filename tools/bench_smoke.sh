#!/usr/bin/env bash
# Smoke run of the side-by-side benchmark on a small grid (needs an SM90 GPU).
# Usage: tools/bench_smoke.sh [OUTDIR]   (writes bench.json / bench.png / bench.log)
# Runs bench.py as a script so the peer columns (cuDNN FP8, SDPA) are measured
# even while `import torch_fmha` fails; the "ours" column then shows n/a + reason.
set -euo pipefail
out=${1:-.}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 torch_fmha/bench.py --seqlens 4096,16384 --head-dims 128,256 --errors --no-progress \
  --json "$out/bench.json" --plot "$out/bench.png" 2>&1 | tee "$out/bench.log"
python3 torch_fmha/bench.py --seqlens 16384 --head-dims 128 --causal both --ragged --window \
  --no-progress --json "$out/bench_ragged.json" 2>&1 | tee -a "$out/bench.log"
