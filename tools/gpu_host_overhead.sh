#!/usr/bin/env bash
# Issue 13 on the GPU machine in one call: host time per layer of the 8-layer
# (linear -> quantize -> attention) stack against SDPA, for the working tree and
# for a baseline tree (BASE, default .baseline, made with `git archive <ref>`),
# the single-call overhead table, and the end-to-end FP8 error table.
#   mkdir -p .baseline && git archive <ref> | tar -x -C .baseline    (git-ignore it, carry it)
#   BASE=.baseline [E2E_ARGS="--head-dims 128"] [STACK_ARGS="--quantize fp8"] bash tools/gpu_host_overhead.sh
# (this tree's stack runs quantize_qkv + attention and fp8_attention per layer, each against SDPA in
# the same rounds, unless STACK_ARGS says otherwise; the baseline's runs BASE_STACK_ARGS, default
# --quantize qkv, which trees from before fp8_attention have)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
: "${BASE:?set BASE to a baseline source tree (see the usage above)}"
source tools/gpu_env.sh || exit 1
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base_site "$BASE" >/dev/null || exit 1
echo "== build"; timeout 200 python3 -m torch_fmha.build 2>&1 | grep -E "^(CUDA|compile)"
(cd /tmp && PYTHONPATH=/tmp/base_site:$PYTHONPATH TORCH_FMHA_CACHE=$OLDPWD/build/base_cache timeout 200 \
  python3 -c "import torch_fmha; print('base built', torch_fmha.build_info.cuda)" 2>&1 | tail -1)
stack="--stack --sdpa-backend cudnn ${STACK_ARGS:---quantize qkv,fused}"
echo "== stack, baseline tree"
(cd /tmp && PYTHONPATH=/tmp/base_site:$PYTHONPATH TORCH_FMHA_CACHE=$OLDPWD/build/base_cache timeout 120 \
  python3 $OLDPWD/tools/overhead.py --stack --sdpa-backend cudnn ${BASE_STACK_ARGS:---quantize qkv} --json "$OUT/stack_before.json" > "$OUT/stack_before.log" 2>&1; echo "rc=$?")
tail -14 "$OUT/stack_before.log"
echo "== stack, this tree"
timeout 120 python3 tools/overhead.py $stack --profile --json "$OUT/stack_after.json" > "$OUT/stack_after.log" 2>&1; echo "rc=$?"
tail -30 "$OUT/stack_after.log"
echo "== single call"
timeout 90 python3 tools/overhead.py --json "$OUT/single.json" > "$OUT/single.log" 2>&1; echo "rc=$?"; tail -16 "$OUT/single.log"
echo "== e2e errors"
timeout 120 python3 -m torch_fmha.bench --no-progress --e2e-errors ${E2E_ARGS:-} --json "$OUT/e2e.json" > "$OUT/e2e.log" 2>&1; echo "rc=$?"; tail -20 "$OUT/e2e.log"
