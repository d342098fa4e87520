#!/usr/bin/env bash
# One call on the GPU machine: install the carried wheels, build the extension
# (timed, 16 jobs), run the GPU tests with per-test time limits, then the
# benchmark. Usage (from the repo root, with .whl carried):
#   [BENCH_ARGS="--seqlens 4096 ..."] [TEST_TIMEOUT=300] tools/gpu_run.sh [tests|bench|all] [pytest args...]
# Build products live in build/ (git-ignored) so a warm machine reuses them.
set -uo pipefail
stage=${1:-all}; shift || true
export PYTHONUNBUFFERED=1 MAX_JOBS=16
out=${OUT:-/tmp/out}; mkdir -p "$out"
source tools/gpu_env.sh || exit 1  # wheels, editable install, build cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
echo "== build"
/usr/bin/time -f "build wall %e s" python3 -m torch_fmha.build 2>&1 | tee "$out/build.log" || exit 1
if [[ $stage == tests || $stage == all ]]; then
  echo "== GPU tests"
  TORCH_FMHA_ERR_LOG=$out/errors.tsv timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q -x --timeout=300 \
    --timeout-method=thread tests/gpu "$@" 2>&1 | tee "$out/tests.log" | tail -25
fi
if [[ $stage == bench || $stage == all ]]; then
  echo "== benchmark"
  timeout ${BENCH_TIMEOUT:-200} python3 -m torch_fmha.bench --no-progress --json "$out/bench.json" \
    --plot "$out/bench.png" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log" | tail -40
fi
