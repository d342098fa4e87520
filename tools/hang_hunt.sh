#!/usr/bin/env bash
# Where is a hung launch stuck? Runs each case (dense FP8 forward through
# torch_fmha.attention, REPS launches, then a bitwise comparison of the reps) in
# the background; if it is still running after CASE_TIMEOUT seconds, cuda-gdb
# attaches and prints where the warps of block 0 are (info cuda warps +
# backtraces of producer warp 0 lanes 0 and 1, producer warp 1, both consumer
# warpgroups), so the stuck wait shows. Then the case is killed.
# GPU machine, repo root, after `source tools/gpu_env.sh`:
#   CASES="B S H HKV D CAUSAL REPS;..." [CASE_TIMEOUT=20] [SANITIZE="B S H HKV D CAUSAL REPS"] bash tools/hang_hunt.sh
# For bounded waits with a report instead of a hang, set TORCH_FMHA_DEBUG_HANG=1
# (its own cached build, docs/DESIGN.md I5). SANITIZE runs one case under
# compute-sanitizer --tool synccheck.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
CASE_PY='
import sys, torch, torch_fmha
b, s, h, hkv, d, causal, reps = (int(x) for x in sys.argv[1:8])
q = torch.randn(b, s, h, d, device="cuda").to(torch.float8_e4m3fn)
k, v = (torch.randn(b, s, hkv, d, device="cuda").to(torch.float8_e4m3fn) for _ in range(2))
outs = [torch_fmha.attention(q, k, v, causal=bool(causal)) for _ in range(reps)]
torch.cuda.synchronize()
status = "PASS" if all(torch.equal(o, outs[0]) for o in outs) else "DIFF (reps differ)"
print(f"{status} b={b} s={s} h={h}/{hkv} d={d} causal={causal} reps={reps}", flush=True)
'
python3 -m torch_fmha.build | tail -1
IFS=';' read -ra cases <<< "${CASES:-8 2048 16 16 64 0 3}"
for c in "${cases[@]}"; do
  python3 -c "$CASE_PY" $c > "$OUT/case.log" 2>&1 &
  pid=$!
  for _ in $(seq ${CASE_TIMEOUT:-20}); do sleep 1; kill -0 $pid 2>/dev/null || break; done
  if ! kill -0 $pid 2>/dev/null; then
    wait $pid; echo "exit $?: $c"; tail -3 "$OUT/case.log"; continue
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
  echo "== compute-sanitizer --tool synccheck: $SANITIZE"
  timeout ${SAN_TIMEOUT:-90} compute-sanitizer --tool synccheck --print-limit 20 \
    python3 -c "$CASE_PY" $SANITIZE 2>&1 | tail -30
fi
