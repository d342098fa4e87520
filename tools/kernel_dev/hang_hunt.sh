#!/usr/bin/env bash
# Hang hunt with build/libfmha_dev.so (build it here with -lineinfo first):
#   CASES="B S H HKV D CAUSAL REPS;..." bash tools/kernel_dev/hang_hunt.sh
# Each case runs under a time limit. A case that hangs is re-run under
# cuda-gdb, interrupted after GDB_AFTER seconds, and every warp's location is
# printed (info cuda warps / threads + backtrace), so the stuck wait shows.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
IFS=';' read -ra cases <<< "${CASES:-8 2048 16 16 64 0 3}"
for c in "${cases[@]}"; do
  if timeout ${CASE_TIMEOUT:-20} python3 tools/kernel_dev/one_case.py $c; then
    echo "OK: $c"; continue
  fi
  echo "HANG/FAIL: $c"
  if [ -z "${NO_GDB:-}" ] && command -v cuda-gdb >/dev/null; then
    cat > /tmp/gdbcmds <<'G'
set pagination off
set confirm off
info cuda kernels
info cuda blocks
info cuda warps
cuda block 0 warp 0 lane 0
bt
cuda block 0 warp 1 lane 0
bt
cuda block 0 warp 4 lane 0
bt
cuda block 0 warp 8 lane 0
bt
kill
quit
G
    # run, interrupt after GDB_AFTER s, then the commands above
    ( sleep ${GDB_AFTER:-25}; pkill -INT -f "^python3 tools/kernel_dev/one_case.py" ) &
    sleeper=$!
    timeout 120 cuda-gdb -q -batch -ex "set cuda break_on_launch none" -ex run -x /tmp/gdbcmds \
      --args python3 tools/kernel_dev/one_case.py $c > "$OUT/gdb_$(echo $c | tr ' ' _).txt" 2>&1
    kill $sleeper 2>/dev/null
    grep -vE "^\[New Thread|^\[Thread" "$OUT/gdb_$(echo $c | tr ' ' _).txt" | tail -120
    NO_GDB=1  # once is enough
  fi
done
if [ -n "${SANITIZE:-}" ]; then
  for tool in synccheck racecheck; do
    echo "== compute-sanitizer --tool $tool: $SANITIZE"
    timeout ${SAN_TIMEOUT:-90} compute-sanitizer --tool $tool --print-limit 20 \
      python3 tools/kernel_dev/one_case.py $SANITIZE 2>&1 | tail -40
  done
fi
