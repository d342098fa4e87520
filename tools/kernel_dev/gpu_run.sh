#!/usr/bin/env bash
# One device call: SASS check + correctness + timing. Usage (on the GPU machine,
# repo root): bash tools/kernel_dev/gpu_run.sh [harness args]
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
cuobjdump -sass build/libfmha_dev.so > "$OUT/sass.txt" 2>&1
for ins in QGMMA UTMALDG USETMAXREG STL LDL; do
  printf "%-11s %s\n" "$ins" "$(grep -c "$ins" "$OUT/sass.txt")"
done
# A smoke run first, with a short limit: a hung kernel costs 60 s, not 300.
timeout 60 python3 tools/kernel_dev/harness.py --smoke 2>&1 | tee "$OUT/smoke.log"
rc=$?
echo "smoke rc=$rc"
if [ $rc -ne 0 ]; then exit $rc; fi
timeout ${HARNESS_TIMEOUT:-240} python3 tools/kernel_dev/harness.py "$@" 2>&1 | tee "$OUT/harness.log"
echo "harness rc=$?"
