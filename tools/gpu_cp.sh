#!/usr/bin/env bash
# Issue 16 in ONE call on a 2- or 4-GPU H100 machine (nvidia-h100-x2 / nvidia-h100-x4): build,
# the 2-GPU context-parallel tests (NCCL, FP8; dense and packed), the context-parallel benchmark
# for each world size W in WORLDS (S = 32k, 128k, 512k; B=1 H=32 Hkv=8 D=128 causal; ring and
# all-gather), a packed batch (128k tokens in 4 sequences, --varlen 4) per W, the test cases
# without a compile on 4 GPUs (tests4), and a summary table (tools/cp_table.py: 1-GPU ms,
# W-GPU ms, speedup, % of the exchange hidden, the issue's targets).
#
# With 4 GPUs and PARALLEL=1 (the default there) the 2-GPU tests run on GPUs 0,1 while the W=2
# benchmarks run on GPUs 2,3 (the tests' compiles load the host CPUs meanwhile; the table says
# so); then the W=4 steps get all four. Every step has a time limit; the whole script stays
# under TOTAL_S (default 540 s). Logs and the table (summary.md) in $OUT.
#   [OUT=/tmp/out] [TOTAL_S=540] [STEPS="tests bench varlen tests4"] [WORLDS="2 4"] [PARALLEL=1]
#   [SEQLENS=32768,131072,524288] [CP_COMPILE=1] bash tools/gpu_cp.sh
set -uo pipefail
# NVLink multicast stays off (the GPU machines' rule; their image sets these too).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
END=$((SECONDS + ${TOTAL_S:-540}))
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU")
if (( NGPU >= 4 )); then DEF_WORLDS="2 4"; DEF_PAR=1; else DEF_WORLDS="2"; DEF_PAR=0; fi
WORLDS=${WORLDS:-$DEF_WORLDS}
PARALLEL=${PARALLEL:-$DEF_PAR}
STEPS=${STEPS:-tests bench varlen tests4}
SEQLENS=${SEQLENS:-32768,131072,524288}
step() { [[ " $STEPS " == *" $1 "* ]]; }
world() { [[ " $WORLDS " == *" $1 "* ]]; }
left() { local cap=$1 r=$((END - SECONDS)); (( r < cap )) && cap=$r; (( cap < 1 )) && cap=1; echo $cap; }
# A step starts only with at least 30 s left (so the script ends near TOTAL_S, never far past it).
time_for() { (( END - SECONDS >= 30 )) && return 0; echo "== skipped $1: $((END - SECONDS)) s left"; return 1; }
# Sourced here unless the caller already did (it sets TORCH_FMHA_CACHE).
[[ -n ${TORCH_FMHA_CACHE:-} ]] || source tools/gpu_env.sh || exit 1
nvidia-smi -L | tee "$OUT/gpus.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpus.txt"
echo "== build"
timeout "$(left 240)" python3 -m torch_fmha.build > "$OUT/build.log" 2>&1
echo "rc=$? ($SECONDS s)"; tail -4 "$OUT/build.log"

tests2() {  # the 2-GPU test file (2 ranks spawned by pytest, NCCL) on the GPUs in $1
  time_for "2-GPU tests" || return
  echo "== tests/gpu/test_context_parallel.py (2 ranks, GPUs $1)"
  CUDA_VISIBLE_DEVICES=$1 timeout -k 10 "$(left 330)" python3 -m pytest -q -s -rs --timeout=370 \
    --timeout-method=thread tests/gpu/test_context_parallel.py > "$OUT/cp_tests.log" 2>&1
  echo "tests rc=$? ($SECONDS s)"
  grep -E "^\[cp\]|^rank .*:|passed|failed|error|SKIPPED" "$OUT/cp_tests.log" | tail -40
  grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/cp_tests.log" | head -20
}

bench() {  # $1: tag, $2: world size, $3: GPUs, $4: seqlens, $5: cap in s, then extra bench flags
  time_for "bench $1" || return
  echo "== bench --context-parallel W=$2 (GPUs $3) S=$4 ${*:6}"
  CUDA_VISIBLE_DEVICES=$3 timeout -k 10 "$(left "$5")" torchrun --nproc-per-node "$2" \
    --master-port $((29400 + $2)) -m torch_fmha.bench --context-parallel --seqlens "$4" "${@:6}" \
    ${CP_COMPILE:+--compile} --json "$OUT/cp_bench_$1.json" > "$OUT/cp_bench_$1.log" 2>&1
  echo "rc=$? ($SECONDS s)"; grep -E "^\||^torch_fmha context" "$OUT/cp_bench_$1.log"
  grep -E "Error|error" "$OUT/cp_bench_$1.log" | grep -v "^S=" | head -5
}

tests4() {  # the test cases without an inductor compile, on 4 ranks (torchrun)
  time_for "4-rank tests" || return
  local cases=causal_S4102_gqa,noncausal_S4096,window_512_causal,window_300_200,causal_fp8_out_d256
  cases+=,varlen_causal_gqa,varlen_noncausal_mqa,varlen_window_300_200,varlen_window_512_causal
  cases+=,varlen_causal_fp8_out_d256,varlen_global_scales,no_host_sync
  echo "== test cases on 4 ranks (torchrun, no compile)"
  CP_CASES=$cases CUDA_VISIBLE_DEVICES=0,1,2,3 timeout -k 10 "$(left 120)" torchrun --nproc-per-node 4 \
    --master-port 29420 tests/gpu/test_context_parallel.py > "$OUT/cp_tests4.log" 2>&1
  echo "rc=$? ($SECONDS s)"; grep -E "^\[cp\]" "$OUT/cp_tests4.log"
  grep -E "^rank 0 FAIL" "$OUT/cp_tests4.log" | head -5
  grep -E "Error|error" "$OUT/cp_tests4.log" | grep -v "^\[cp\]\|^rank" | head -5
}

bench2() {  # W=2 dense, then packed, on the GPUs in $1
  step bench && bench w2 2 "$1" "$SEQLENS" 200
  step varlen && bench w2_varlen 2 "$1" 131072 90 --varlen 4
}

OVERLAP=""
if step tests && world 2 && (( PARALLEL == 1 && NGPU >= 4 )); then
  OVERLAP="W=2 benchmarks ran on GPUs 2,3 while the 2-GPU tests (with inductor compiles) ran on GPUs 0,1"
  tests2 0,1 > "$OUT/phase_tests.txt" 2>&1 &
  TPID=$!
  bench2 2,3
  wait $TPID
  cat "$OUT/phase_tests.txt"
else
  step tests && tests2 0,1
  world 2 && bench2 0,1
fi
if world 4 && (( NGPU >= 4 )); then
  step bench && bench w4 4 0,1,2,3 "$SEQLENS" 200
  step tests4 && tests4
  step varlen && bench w4_varlen 4 0,1,2,3 131072 90 --varlen 4
fi

echo "== summary"
{
  echo "context-parallel benchmark ($(grep -m1 '^GPU 0' "$OUT/gpus.txt" | sed 's/ (UUID.*//'), $(tail -1 "$OUT/gpus.txt"))"
  [[ -n $OVERLAP ]] && echo "note: $OVERLAP"
  python3 tools/cp_table.py "$OUT"/cp_bench_*.log
} | tee "$OUT/summary.md"
echo "== done in $SECONDS s"
