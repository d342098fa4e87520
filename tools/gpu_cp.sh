#!/usr/bin/env bash
# Issue 16 in ONE call on a 2-GPU H100 machine (nvidia-h100-x2): build, the 2-GPU
# context-parallel tests (NCCL, FP8; dense and packed) and the context-parallel benchmark
# (S = 32k, 128k in one run, 512k in a second so that a failure there keeps the others;
# then a packed batch: 128k tokens in 4 sequences, --varlen 4).
# Every step has a timeout; the whole script stays under TOTAL_S (default 570 s). Logs in $OUT.
# STEPS picks the steps (default "tests bench varlen"): e.g. STEPS=tests in one call and
# STEPS="bench varlen" in a second when one call's 600 s is not enough for all.
#   [OUT=/tmp/out] [TOTAL_S=570] [STEPS="tests bench varlen"] [CP_COMPILE=1] [NPROC=2] bash tools/gpu_cp.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
END=$((SECONDS + ${TOTAL_S:-570}))
STEPS=${STEPS:-tests bench varlen}
step() { [[ " $STEPS " == *" $1 "* ]]; }
NPROC=${NPROC:-2}
left() { local cap=$1 r=$((END - SECONDS)); (( r < cap )) && cap=$r; (( cap < 10 )) && cap=10; echo $cap; }
source tools/gpu_env.sh || exit 1
nvidia-smi -L | tee "$OUT/gpus.txt"
echo "== build"
timeout "$(left 300)" python3 -m torch_fmha.build > "$OUT/build.log" 2>&1
echo "rc=$? ($SECONDS s)"; tail -4 "$OUT/build.log"
if step tests; then
echo "== tests/gpu/test_context_parallel.py (2 ranks spawned, NCCL)"
timeout -k 10 "$(left 340)" python3 -m pytest -q -s -rs --timeout=370 --timeout-method=thread \
  tests/gpu/test_context_parallel.py > "$OUT/cp_tests.log" 2>&1
echo "rc=$? ($SECONDS s)"; grep -E "^rank .*:|passed|failed|error|SKIPPED" "$OUT/cp_tests.log" | tail -30
grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/cp_tests.log" | head -20
fi
bench() {  # $1: tag, $2: seqlens, $3: cap in s, then extra bench flags
  echo "== bench --context-parallel S=$2 ${*:4} ($NPROC GPUs)"
  timeout -k 10 "$(left "$3")" torchrun --nproc-per-node "$NPROC" -m torch_fmha.bench --context-parallel \
    --seqlens "$2" "${@:4}" ${CP_COMPILE:+--compile} --json "$OUT/cp_bench_$1.json" > "$OUT/cp_bench_$1.log" 2>&1
  echo "rc=$? ($SECONDS s)"; grep -E "^\||^torch_fmha context|^S=" "$OUT/cp_bench_$1.log"
  grep -E "Error|error" "$OUT/cp_bench_$1.log" | grep -v "^S=" | head -5
}
if step bench; then
bench small 32768,131072 150
bench 512k 524288 150
fi
if step varlen; then
bench varlen 131072 120 --varlen 4
fi
echo "== done in $SECONDS s"
