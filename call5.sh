#!/usr/bin/env bash
# Session 37 call 5 (the final kernel): the varlen stress, 2000 launches (call 4's was cut by
# its 120 s limit at 1250: 10x slower per launch than session 33's run; the host's CPU here).
set -uo pipefail
R=$OUT; mkdir -p $OUT/r; export OUT=$OUT/r
source tools/gpu_env.sh > $OUT/env.log 2>&1 || { echo env failed; cat $OUT/env.log; }
(nproc; lscpu | grep -E "Model name|^CPU\(s\)|MHz"; uptime) > $OUT/host.txt 2>&1
git log --oneline -1 > $OUT/commit.txt; git status --short >> $OUT/commit.txt
( timeout 200 python3 -m torch_fmha.build > $OUT/build.log 2>&1; echo "build rc $? at $SECONDS s" >> $OUT/rc.txt )
(uptime; top -bn1 | head -15) > $OUT/load.txt 2>&1
(cd /tmp && timeout 290 python3 $OLDPWD/tools/stress_varlen.py --launches 2000 > $OUT/stress.log 2>&1; echo "stress rc $? at $SECONDS s" >> $OUT/rc.txt)
echo "end at $SECONDS s" >> $OUT/rc.txt
cd $R && tar czf all.tgz r && rm -rf r
