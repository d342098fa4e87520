#!/usr/bin/env bash
# Hang hunt in one GPU call: one forward per case under a wall-clock limit.
# CASES="B S H HKV D CAUSAL;..." tools/diag.sh   (TORCH_FMHA_DEBUG_HANG=1 for bounded waits)
set -uo pipefail
source tools/gpu_env.sh || exit 1
python3 -m torch_fmha.build | tail -2
IFS=';' read -ra cases <<< "${CASES:-2 4224 4 2 64 1}"
for c in "${cases[@]}"; do
  timeout ${CASE_TIMEOUT:-25} python3 tools/diag_cases.py $c 2>&1 | grep -E "PASS|hang|Error|error" | head -5 \
    || echo "HANG/FAIL (no output): $c"
done
