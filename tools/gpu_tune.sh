#!/usr/bin/env bash
# Tuning experiment on the GPU machine: builds the kernel once per variant
# (extra nvcc flags through TORCH_FMHA_NVCC_EXTRA, e.g. the TORCH_FMHA_TUNE_*
# knobs of kernel_traits.cuh / consumer.cuh) and benchmarks them in alternating
# processes against cuDNN FP8, ROUNDS times, then prints ours / cuDNN per variant.
#   VARIANTS="base: n128:-DTORCH_FMHA_TUNE_BLOCK_N_128=128,-DTORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_128=0" BENCH_ARGS="--head-dims 128" bash tools/gpu_tune.sh
#   (blocks narrower than the split tail's workspace assumes need its knob at 0: tile_scheduler.cuh)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu_env.sh || exit 1
args=${BENCH_ARGS:---head-dims 128 --seqlens 1024,4096,16384}
read -r -a variants <<< "${VARIANTS:-base:}"
# All variants build at once (each into its own cache directory, keyed by its flags),
# sharing the machine's cores: one build is bound by its slowest unit, not by the cores.
# (Two variants with the same flags would share a directory while both build: refused.)
dups=$(for v in "${variants[@]}"; do f=${v#*:}; echo "[${f//,/ }]"; done | sort | uniq -d)
[ -n "$dups" ] && { echo "gpu_tune.sh: two variants have the same flags ($dups): one build each, please"; exit 2; }
jobs=$(( $(nproc) / ${#variants[@]} )); (( jobs < 2 )) && jobs=2
for v in "${variants[@]}"; do
  name=${v%%:*}; flags=${v#*:}; flags=${flags//,/ }
  (MAX_JOBS=$jobs TORCH_FMHA_NVCC_EXTRA="$flags" timeout ${BUILD_TIMEOUT:-400} python3 -m torch_fmha.build \
     > "$OUT/build_$name.log" 2>&1; echo "== build $name ($flags): rc $? $(grep -E '^compile' "$OUT/build_$name.log")") &
done
wait
for r in $(seq 1 ${ROUNDS:-2}); do
  for v in "${variants[@]}"; do
    name=${v%%:*}; flags=${v#*:}; flags=${flags//,/ }
    (cd /tmp && TORCH_FMHA_NVCC_EXTRA="$flags" timeout ${BENCH_TIMEOUT:-200} python3 -m torch_fmha.bench \
      --no-progress --json "$OUT/tune_${name}_$r.json" $args > "$OUT/tune_${name}_$r.log" 2>&1) || echo "bench $name round $r failed: $(tail -3 $OUT/tune_${name}_$r.log)"
  done
done
python3 tools/ab_table.py "$OUT"/tune_*.json
