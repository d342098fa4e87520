#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck and synccheck over tests/sanitize_cases.py
# (ragged FP8 batches with empty sequences per head dim, D=256 with FP8 output,
# dense cases). GPU machine, repo root, after `source tools/gpu_env.sh`.
#   HEAD_DIMS=64,128,256 SAN_TIMEOUT=240 [SAN_ONLY=split_tail,window] [SAN_TOOLS=racecheck,synccheck] bash tools/sanitize.sh
# (SAN_ONLY: tests/sanitize_cases.py's case names, default all; SAN_TOOLS: default all three)
# Each tool's report goes to $OUT/sanitize_<tool>.txt; the summary lines are printed.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
rc=0
SAN_TOOLS=${SAN_TOOLS:-memcheck,racecheck,synccheck}
for tool in ${SAN_TOOLS//,/ }; do
  log="$OUT/sanitize_$tool.txt"
  extra=()
  [ "$tool" = racecheck ] && extra=(--racecheck-report analysis)
  timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool "$tool" "${extra[@]}" --print-limit 50 \
    --error-exitcode 3 python3 tests/sanitize_cases.py --head-dims "${HEAD_DIMS:-64,128,256}" ${SAN_ONLY:+--only "$SAN_ONLY"} \
    > "$log" 2>&1
  r=$?
  echo "== $tool (exit $r): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|hazard' "$log" | tail -1)"
  grep -E ": ok$" "$log" | tr '\n' ' '; echo
  [ $r -ne 0 ] && { rc=1; grep -E "=========" "$log" | head -30; }
done
exit $rc
