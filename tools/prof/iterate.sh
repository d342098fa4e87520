#!/usr/bin/env bash
# One GPU call for a kernel iteration: build, GPU tests, benchmark, optional
# Nsight Compute profile and AOTI diagnosis. Logs in $OUT.
#   [PYTEST_K=...] [BENCH_ARGS=...] [NCU_CASES="128:8192:0"] [AOTI_DIAG=1] bash tools/prof/iterate.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu_env.sh || exit 1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
echo "== build"; /usr/bin/time -f "build wall %e s" python3 -m torch_fmha.build 2>&1 | tail -2
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  echo "== tests/gpu"
  timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q --timeout=150 --timeout-method=thread tests/gpu \
    ${PYTEST_K:+-k "$PYTEST_K"} > "$OUT/tests_gpu.log" 2>&1
  echo "rc=$?"; tail -1 "$OUT/tests_gpu.log"; grep -E "^(FAILED|ERROR)" "$OUT/tests_gpu.log" | head -20
fi
if [[ -n ${BENCH_ARGS+x} ]]; then
  echo "== bench"
  timeout ${BENCH_TIMEOUT:-240} python3 -m torch_fmha.bench --no-progress --json "$OUT/bench.json" \
    ${BENCH_ARGS} > "$OUT/bench.log" 2>&1
  echo "rc=$?"; cat "$OUT/bench.log" | tail -40
fi
if [[ ${AOTI_DIAG:-0} == 1 ]]; then
  echo "== aoti diag"; timeout 240 python3 tools/prof/aoti_diag.py /tmp/aoti_diag > "$OUT/aoti_diag.log" 2>&1
  echo "rc=$?"; grep -vE "Warning|warn" "$OUT/aoti_diag.log" | head -60
fi
if [[ -n ${NCU_CASES:-} ]]; then
  echo "== ncu"; CASES="$NCU_CASES" OUT=$OUT bash tools/prof/ncu_profile.sh
fi
if [[ ${COMPILE_TESTS:-0} == 1 ]]; then
  echo "== compile_tests (CUDA) + transformers"
  timeout ${COMPILE_TIMEOUT:-300} python3 -m pytest -q --timeout=250 --timeout-method=thread -rs \
    compile_tests/test_cuda_compile.py tests/test_transformers.py > "$OUT/compile.log" 2>&1
  echo "rc=$?"; tail -1 "$OUT/compile.log"; grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/compile.log" | head -20
fi
