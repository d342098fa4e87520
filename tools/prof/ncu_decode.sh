#!/usr/bin/env bash
# Nsight Compute on the decode kernel (issue 15; GPU machine, after the build): all
# sections of one step per case, in a text file per case in $OUT, with its headline
# numbers and stall reasons printed, and the per-instruction SASS page (stall samples per
# instruction) as a csv next to it.
#   CASES="8:32:8192 1:32:32768" bash tools/prof/ncu_decode.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
for c in ${CASES:-8:32:8192}; do
  IFS=: read -r b h s <<<"$c"
  f=$OUT/ncu_decode_b${b}_h${h}_s${s}
  timeout ${NCU_TIMEOUT:-150} ncu --set full --import-source no --kernel-name regex:decode_kernel \
    --launch-skip 2 --launch-count 1 -o "$f" python3 tools/prof/decode_launch.py "$b" "$h" "$s" 4 --no-times \
    > "$f.log" 2>&1 || { echo "ncu failed for $c"; tail -5 "$f.log"; continue; }
  ncu --import "$f.ncu-rep" --page details --print-details all > "$f.details.txt" 2>&1
  ncu --import "$f.ncu-rep" --page source --print-source sass --csv > "$f.sass.csv" 2>&1
  rm -f "$f.ncu-rep" "$f.log"
  echo "-- $c"
  grep -E "^\s+(Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued Instruction|Block Limit Shared Mem|Dynamic Shared Memory Per Block|L2 Hit Rate|Mem Busy|Max Bandwidth)" "$f.details.txt" | head -20
  grep -iE "stall|cycles.*(waiting|spent)" "$f.details.txt" | head -8
done
