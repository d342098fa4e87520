#!/usr/bin/env bash
# Nsight Compute on the FP8 kernel (GPU machine, after the build): details of all
# sections and the per-instruction SASS page, one text file per case in $OUT.
#   CASES="128:8192:0 256:8192:0" bash tools/prof/ncu_profile.sh
# A case may name what runs as a fourth field (tools/prof/one_launch.py: ours (default),
# packedv, packed, pagedP, cudnn), e.g. CASES="256:4096:0:packed 256:4096:0:paged64"; with cudnn
# the profiled kernel is cuDNN's (its SASS page is the only way to read that runtime-compiled kernel).
set -uo pipefail
OUT=${OUT:-/tmp/out}
for c in ${CASES:-128:8192:0}; do
  IFS=: read -r d s causal who <<<"$c"
  who=${who:-ours}; suffix=""; [[ $who != ours ]] && suffix="_$who"
  f=$OUT/ncu_d${d}_s${s}_c${causal}${suffix}
  kernel=fmha_fwd; [[ $who == cudnn ]] && kernel='flash_fprop|sdpa'
  timeout ${NCU_TIMEOUT:-150} ncu --set full --import-source no --kernel-name regex:"$kernel" \
    --launch-skip 1 --launch-count 1 -o "$f" python3 tools/prof/one_launch.py "$d" "$s" "$causal" 2 "$who" \
    > "$f.log" 2>&1 || { echo "ncu failed for $c"; tail -5 "$f.log"; continue; }
  ncu --import "$f.ncu-rep" --page details --print-details all > "$f.details.txt" 2>&1
  ncu --import "$f.ncu-rep" --page source --print-source sass --csv > "$f.sass.csv" 2>&1
  rm -f "$f.ncu-rep" "$f.log"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" "$f.details.txt" | head -12
done
