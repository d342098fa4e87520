#!/usr/bin/env bash
# Session 36 call 5 (45763fd, the final code): where a decode step's time goes at the cells
# issue 15 misses (B = 1 32k, B = 8 8k) and at B = 1 128k: tools/prof/decode_timing.py (the
# benchmark's flush by a write, a read-only flush, warm; ours and SDPA flash bf16) and
# tools/prof/decode_launch.py (each kernel's time per step from the profiler, the merge's tail).
set -uo pipefail
R=$OUT; mkdir -p $OUT/r; export OUT=$OUT/r
source tools/gpu_env.sh > $OUT/env.log 2>&1 || { echo env failed; cat $OUT/env.log; }
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt 2>&1
git log --oneline -1 > $OUT/commit.txt; git status --short >> $OUT/commit.txt
( timeout 200 python3 -m torch_fmha.build > $OUT/build.log 2>&1; echo "build rc $? at $SECONDS s" >> $OUT/rc.txt )
(cd /tmp && timeout 90 python3 $OLDPWD/tools/prof/decode_timing.py 1:32768 8:8192 1:131072 > $OUT/decode_timing.log 2>&1; echo "timing rc $? at $SECONDS s" >> $OUT/rc.txt)
for c in "1 32 32768" "8 32 8192" "1 32 131072"; do
  (cd /tmp && timeout 40 python3 $OLDPWD/tools/prof/decode_launch.py $c 50 > "$OUT/decode_launch_${c// /_}.log" 2>&1; echo "launch $c rc $? at $SECONDS s" >> $OUT/rc.txt)
done
echo "end at $SECONDS s" >> $OUT/rc.txt
cd $R && tar czf all.tgz r && rm -rf r
