#!/usr/bin/env bash
# One GPU call for a full check: build, GPU tests (dense + varlen), CUDA compile/
# export/AOTI + transformers tests, sanitizers, varlen stress; on request also the
# benchmark (BENCH_ARGS), Nsight Compute profiles (NCU_CASES, tools/prof/ncu_profile.sh)
# and the AOTI load diagnosis (AOTI_DIAG=1, compile_tests/aoti_diag.py). Logs in $OUT.
#   [STRESS_LAUNCHES=2000] [SKIP=tests,compile,sanitize,stress] [PYTEST_K=...]
#   [E2E=1 [E2E_ARGS=...]] (bench --e2e-errors) [OVERHEAD_ARGS="--stack"] (tools/overhead.py)
#   [BENCH_ARGS="--seqlens 4096"] [NCU_CASES="128:8192:0"] [AOTI_DIAG=1] bash tools/gpu_check_all.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu_env.sh || exit 1
skip=",${SKIP:-},"
echo "== build"; /usr/bin/time -f "build wall %e s" python3 -m torch_fmha.build 2>&1 | tail -4
if [[ $skip != *,tests,* ]]; then
  echo "== tests/gpu"
  TORCH_FMHA_ERR_LOG=$OUT/errors.tsv timeout ${TEST_TIMEOUT:-400} python3 -m pytest -q --timeout=200 \
    --timeout-method=thread tests/gpu ${PYTEST_K:+-k "$PYTEST_K"} > "$OUT/tests_gpu.log" 2>&1
  echo "rc=$?"; grep -E "passed|failed|error" "$OUT/tests_gpu.log" | tail -3; grep -E "^(FAILED|ERROR)" "$OUT/tests_gpu.log" | head -20
fi
if [[ $skip != *,compile,* ]]; then
  echo "== compile_tests (CUDA) + transformers"
  timeout ${COMPILE_TIMEOUT:-420} python3 -m pytest -q --timeout=250 --timeout-method=thread -rs \
    compile_tests/test_cuda_compile.py tests/test_transformers.py tests/test_quantize.py > "$OUT/compile.log" 2>&1
  echo "rc=$?"; grep -E "passed|failed|error" "$OUT/compile.log" | tail -3; grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/compile.log" | head -20
fi
if [[ $skip != *,sanitize,* ]]; then
  echo "== sanitizers"; SAN_TIMEOUT=${SAN_TIMEOUT:-120} OUT=$OUT bash tools/sanitize.sh
fi
if [[ $skip != *,stress,* ]]; then
  echo "== stress"
  timeout ${STRESS_TIMEOUT:-200} python3 tools/stress_varlen.py --device cuda --launches ${STRESS_LAUNCHES:-2000} \
    --check-every 20 --launch-timeout 20 --max-len 2000 > "$OUT/stress.log" 2>&1
  echo "rc=$?"; grep -vE "^\s*$" "$OUT/stress.log" | tail -5
fi
if [[ -n ${BENCH_ARGS+x} ]]; then
  echo "== bench"
  timeout ${BENCH_TIMEOUT:-240} python3 -m torch_fmha.bench --no-progress --json "$OUT/bench.json" \
    ${BENCH_ARGS} > "$OUT/bench.log" 2>&1
  echo "rc=$?"; tail -40 "$OUT/bench.log"
fi
if [[ ${E2E:-0} == 1 ]]; then
  echo "== bench --e2e-errors"
  timeout ${E2E_TIMEOUT:-200} python3 -m torch_fmha.bench --no-progress --e2e-errors --json "$OUT/e2e.json" \
    ${E2E_ARGS:-} > "$OUT/e2e.log" 2>&1
  echo "rc=$?"; tail -30 "$OUT/e2e.log"
fi
if [[ -n ${OVERHEAD_ARGS+x} ]]; then
  echo "== tools/overhead.py $OVERHEAD_ARGS"
  timeout ${OVERHEAD_TIMEOUT:-240} python3 tools/overhead.py $OVERHEAD_ARGS > "$OUT/overhead.log" 2>&1
  echo "rc=$?"; tail -40 "$OUT/overhead.log"
fi
if [[ ${AOTI_DIAG:-0} == 1 ]]; then
  echo "== aoti diag"; timeout 240 python3 compile_tests/aoti_diag.py /tmp/aoti_diag > "$OUT/aoti_diag.log" 2>&1
  echo "rc=$?"; grep -vE "Warning|warn" "$OUT/aoti_diag.log" | head -60
fi
if [[ -n ${NCU_CASES:-} ]]; then
  echo "== ncu"; CASES="$NCU_CASES" OUT=$OUT bash tools/prof/ncu_profile.sh
fi
