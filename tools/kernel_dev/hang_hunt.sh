#!/usr/bin/env bash
# Hang hunt with build/libfmha_dev.so (or $TFMHA_DEV_LIB; build it with -lineinfo):
#   CASES="B S H HKV D CAUSAL REPS;..." bash tools/kernel_dev/hang_hunt.sh
# Each case runs in the background; if it is still running after CASE_TIMEOUT
# seconds, cuda-gdb attaches to it and prints where every warp of block 0 is
# (info cuda warps + backtraces), so the stuck wait shows. Then it is killed.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
IFS=';' read -ra cases <<< "${CASES:-8 2048 16 16 64 0 3}"
for c in "${cases[@]}"; do
  python3 tools/kernel_dev/one_case.py $c > /tmp/case.log 2>&1 &
  pid=$!
  for _ in $(seq ${CASE_TIMEOUT:-20}); do sleep 1; kill -0 $pid 2>/dev/null || break; done
  if ! kill -0 $pid 2>/dev/null; then
    wait $pid; echo "exit $?: $c"; tail -3 /tmp/case.log; continue
  fi
  echo "HANG: $c (still running after ${CASE_TIMEOUT:-20} s)"
  if [ -z "${NO_GDB:-}" ] && command -v cuda-gdb >/dev/null; then
    log="$OUT/gdb_$(echo $c | tr ' ' _).txt"
    timeout ${GDB_TIMEOUT:-90} cuda-gdb -q -batch -p $pid \
      -ex "set pagination off" -ex "info cuda kernels" -ex "info cuda warps" \
      -ex "cuda block 0 warp 0 lane 0" -ex "bt 3" -ex "cuda block 0 warp 0 lane 1" -ex "bt 3" \
      -ex "cuda block 0 warp 1 lane 0" -ex "bt 3" -ex "cuda block 0 warp 4 lane 0" -ex "bt 3" \
      -ex "cuda block 0 warp 8 lane 0" -ex "bt 3" -ex "detach" > "$log" 2>&1
    grep -vE "Cuda Driver error|^\[New Thread|^\[Thread|libthread_db" "$log" | head -90
    NO_GDB=1  # once is enough
  fi
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
done
if [ -n "${SANITIZE:-}" ]; then
  for tool in synccheck; do
    echo "== compute-sanitizer --tool $tool: $SANITIZE"
    timeout ${SAN_TIMEOUT:-90} compute-sanitizer --tool $tool --print-limit 20 \
      python3 tools/kernel_dev/one_case.py $SANITIZE 2>&1 | tail -30
  done
fi
