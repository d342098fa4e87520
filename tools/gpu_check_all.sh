#!/usr/bin/env bash
# One GPU call for a full check: build, GPU tests (dense + varlen), CUDA compile/
# export/AOTI + transformers tests, sanitizers, varlen stress; on request also the
# benchmark (BENCH_ARGS), Nsight Compute profiles (NCU_CASES, tools/prof/ncu_profile.sh)
# and the AOTI load diagnosis (AOTI_DIAG=1, compile_tests/aoti_diag.py). Logs in $OUT.
#   [STRESS_LAUNCHES=2000] [SKIP=tests,compile,sanitize,stress] [PYTEST_K=...] [SAN_ONLY=...] [SAN_TOOLS=...]
#   [E2E=1 [E2E_ARGS=...]] (bench --e2e-errors) [OVERHEAD_ARGS="--stack"] (tools/overhead.py)
#   [BENCH_ARGS="--seqlens 4096"] [NCU_CASES="128:8192:0"] [AOTI_DIAG=1] [BUDGET_S=570] bash tools/gpu_check_all.sh
# One device call may run 600 s: each section's timeout is cut to what is left of BUDGET_S
# (default 570 s, the rest for copying $OUT back), and a section with under 20 s left is
# skipped with a line saying so, so a call always ends with its logs; split with SKIP=.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu_env.sh || exit 1
skip=",${SKIP:-},"
BUDGET_S=${BUDGET_S:-570}
budget() {  # budget SECTION SECONDS -> min(SECONDS, what is left), or 0 and a SKIPPED line
  local left=$(( BUDGET_S - SECONDS ))
  if (( left < 20 )); then echo "== $1: SKIPPED (${left} s of BUDGET_S=$BUDGET_S left)" >&2; echo 0; return; fi
  echo $(( left < $2 ? left : $2 ))
}
echo "== build"; /usr/bin/time -f "build wall %e s" python3 -m torch_fmha.build 2>&1 | tail -4
if [[ $skip != *,tests,* ]] && t=$(budget tests/gpu ${TEST_TIMEOUT:-400}) && (( t )); then
  echo "== tests/gpu (timeout $t s)"
  # --durations: the slowest tests, to keep the suite inside one call (session 31: 729 of its
  # tests in 350 s); a log cut by the timeout has none, so -v names the test it stopped in.
  TORCH_FMHA_ERR_LOG=$OUT/errors.tsv timeout $t python3 -m pytest -v --durations=30 --timeout=200 \
    --timeout-method=thread tests/gpu ${PYTEST_K:+-k "$PYTEST_K"} > "$OUT/tests_gpu.log" 2>&1
  rc=$?; echo "rc=$rc"; grep -E "^=+ .*(passed|failed|error)" "$OUT/tests_gpu.log" | tail -1
  grep -E "^(FAILED|ERROR) " "$OUT/tests_gpu.log" | head -20
  (( rc == 124 )) && echo "cut by the section timeout after: $(grep -E '::' "$OUT/tests_gpu.log" | tail -1)"
fi
if [[ $skip != *,compile,* ]] && t=$(budget compile_tests ${COMPILE_TIMEOUT:-420}) && (( t )); then
  echo "== compile_tests (CUDA) + transformers (timeout $t s)"
  # test_compile_paged.py's CUDA cases (issue 14): no recompiles over seqused_k / page counts,
  # export + AOTInductor of a paged call in a fresh process (the transformers models on CUDA
  # are in tests/gpu/test_serving_features_sm90.py).
  # -v: a line per test, so a section cut by its timeout still names the test it was in.
  timeout $t python3 -m pytest -v --timeout=250 --timeout-method=thread -rs \
    compile_tests/test_cuda_compile.py tests/test_transformers.py tests/test_quantize.py \
    "compile_tests/test_compile_paged.py::test_paged_dynamic_no_recompile[cuda]" \
    "compile_tests/test_compile_paged.py::test_paged_export_aoti_package_in_fresh_process[cuda]" \
    > "$OUT/compile.log" 2>&1
  rc=$?; echo "rc=$rc"; grep -E "^=+ .*(passed|failed|error)" "$OUT/compile.log" | tail -1
  grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/compile.log" | head -20
  (( rc == 124 )) && echo "cut by the section timeout in: $(grep -E '::' "$OUT/compile.log" | tail -1)"
fi
san_tools=${SAN_TOOLS:-memcheck,racecheck,synccheck}; san_n=$(( $(tr -cd , <<< "$san_tools" | wc -c) + 1 ))
if [[ $skip != *,sanitize,* ]] && t=$(budget sanitizers $(( san_n * ${SAN_TIMEOUT:-120} ))) && (( t )); then
  # tools/sanitize.sh runs the tools SAN_TOOLS names (default all three), SAN_ONLY's cases
  echo "== sanitizers (timeout $(( t / san_n )) s per tool)"; SAN_TIMEOUT=$(( t / san_n )) OUT=$OUT bash tools/sanitize.sh
fi
if [[ $skip != *,stress,* ]] && t=$(budget stress ${STRESS_TIMEOUT:-200}) && (( t )); then
  echo "== stress (timeout $t s)"
  timeout $t python3 tools/stress_varlen.py --device cuda --launches ${STRESS_LAUNCHES:-2000} \
    --check-every 20 --launch-timeout 20 --max-len 2000 > "$OUT/stress.log" 2>&1
  echo "rc=$?"; grep -vE "^\s*$" "$OUT/stress.log" | tail -5
fi
if [[ -n ${BENCH_ARGS+x} ]] && t=$(budget bench ${BENCH_TIMEOUT:-240}) && (( t )); then
  echo "== bench (timeout $t s)"
  timeout $t python3 -m torch_fmha.bench --no-progress --json "$OUT/bench.json" \
    ${BENCH_ARGS} > "$OUT/bench.log" 2>&1
  echo "rc=$?"; tail -40 "$OUT/bench.log"
fi
if [[ ${E2E:-0} == 1 ]] && t=$(budget "bench --e2e-errors" ${E2E_TIMEOUT:-200}) && (( t )); then
  echo "== bench --e2e-errors (timeout $t s)"
  timeout $t python3 -m torch_fmha.bench --no-progress --e2e-errors --json "$OUT/e2e.json" \
    ${E2E_ARGS:-} > "$OUT/e2e.log" 2>&1
  echo "rc=$?"; tail -30 "$OUT/e2e.log"
fi
if [[ -n ${OVERHEAD_ARGS+x} ]] && t=$(budget tools/overhead.py ${OVERHEAD_TIMEOUT:-240}) && (( t )); then
  echo "== tools/overhead.py $OVERHEAD_ARGS (timeout $t s)"
  timeout $t python3 tools/overhead.py $OVERHEAD_ARGS > "$OUT/overhead.log" 2>&1
  echo "rc=$?"; tail -40 "$OUT/overhead.log"
fi
if [[ ${AOTI_DIAG:-0} == 1 ]] && t=$(budget "aoti diag" 240) && (( t )); then
  echo "== aoti diag"; timeout $t python3 compile_tests/aoti_diag.py /tmp/aoti_diag > "$OUT/aoti_diag.log" 2>&1
  echo "rc=$?"; grep -vE "Warning|warn" "$OUT/aoti_diag.log" | head -60
fi
if [[ -n ${NCU_CASES:-} ]] && t=$(budget ncu ${NCU_TIMEOUT:-150}) && (( t )); then
  echo "== ncu"; NCU_TIMEOUT=$t CASES="$NCU_CASES" OUT=$OUT bash tools/prof/ncu_profile.sh
fi
