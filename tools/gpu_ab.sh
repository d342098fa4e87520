#!/usr/bin/env bash
# A/B benchmark on the GPU machine: the working tree against a baseline source
# tree, in alternating processes (base, new, base, new), each timing torch_fmha
# and cuDNN FP8 side by side, so the ours/cuDNN ratios of the two kernels can be
# compared with the run-to-run spread visible. Make the baseline here first:
#   mkdir -p .baseline && git archive <ref> | tar -x -C .baseline   (.baseline is git-ignored; carry it)
#   BASE=.baseline [BENCH_ARGS="--seqlens 1024,4096,16384"] [ROUNDS=2] bash tools/gpu_ab.sh
# DECODE_ARGS="--batches 1,8 --cache 1024,8192,32768 --splits 4,16,32" times decode steps
# with tools/decode_splits.py (CUDA-graph replays per split count) instead of the bench.
# Each tree gets its own Inductor cache: a graph cached by one tree can call an op schema
# the other does not have (seen in session 15: quantize_qkv with an argument too many).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu_env.sh || exit 1
: "${BASE:?set BASE to a baseline source tree (see the usage above)}"
args=${BENCH_ARGS:---seqlens 1024,4096,16384}
# The baseline is installed as a regular (non-editable) package of its own, so
# none of its modules or sources resolve to the working tree's editable install.
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base_site "$BASE" >/dev/null || exit 1
tree_env() {  # sets pp (PYTHONPATH head), cache and inductor (cache dir) for tree $1
  if [[ $1 == base ]]; then pp=/tmp/base_site; cache=$PWD/build/base_cache; else pp=$PWD; cache=$TORCH_FMHA_CACHE; fi
  inductor=/tmp/inductor_$1
}
for tree in new base; do  # build both first, so builds stay out of the timing rounds
  tree_env $tree
  echo "== build $tree"
  (cd /tmp && PYTHONPATH=$pp:$PYTHONPATH TORCH_FMHA_CACHE=$cache timeout 300 python3 -c "
import torch_fmha, torch_fmha._build as b
print('sources', b.source_root(), 'library', torch_fmha.build_info.library, 'cuda', torch_fmha.build_info.cuda)" 2>&1 | tail -2)
done
for r in $(seq 1 ${ROUNDS:-2}); do
  for tree in base new; do
    tree_env $tree
    echo "== bench $tree round $r"
    if [[ -n ${DECODE_ARGS:-} ]]; then
      (cd /tmp && PYTHONPATH=$pp:$PYTHONPATH TORCH_FMHA_CACHE=$cache TORCHINDUCTOR_CACHE_DIR=$inductor \
        timeout ${BENCH_TIMEOUT:-300} python3 "$OLDPWD/tools/decode_splits.py" $DECODE_ARGS \
        --json "$OUT/dab_${tree}_$r.json" > "$OUT/dab_${tree}_$r.log" 2>&1)
      echo "rc=$?"; tail -n +2 "$OUT/dab_${tree}_$r.log"
      continue
    fi
    (cd /tmp && PYTHONPATH=$pp:$PYTHONPATH TORCH_FMHA_CACHE=$cache TORCHINDUCTOR_CACHE_DIR=$inductor \
      timeout ${BENCH_TIMEOUT:-300} python3 -m torch_fmha.bench --no-progress --json "$OUT/ab_${tree}_$r.json" \
      $args > "$OUT/ab_${tree}_$r.log" 2>&1)
    echo "rc=$?"
  done
done
[[ -n ${DECODE_ARGS:-} ]] || python3 tools/ab_table.py "$OUT"/ab_*.json
