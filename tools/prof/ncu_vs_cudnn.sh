#!/usr/bin/env bash
# Nsight Compute, ours and cuDNN FP8 on the same shape (FP8 in and out), the
# throughput sections only: pipe utilisation (tensor, XU = MUFU), issue slots,
# shared-memory bandwidth, cycles. One summary file per case and kernel in $OUT.
#   CASES="128:4096:0" bash tools/prof/ncu_vs_cudnn.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
metrics=sm__cycles_elapsed.avg,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,\
sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,\
l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed,\
l1tex__data_bank_reads.avg.pct_of_peak_sustained_elapsed,l1tex__data_bank_writes.avg.pct_of_peak_sustained_elapsed,\
smsp__inst_executed.sum,gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,\
smsp__cycles_active.avg,sm__warps_active.avg.per_cycle_active
for c in ${CASES:-128:4096:0}; do
  IFS=: read -r d s causal <<<"$c"
  for who in ours cudnn; do
    f=$OUT/ncu_cmp_${who}_d${d}_s${s}_c${causal}.txt
    timeout ${NCU_TIMEOUT:-120} ncu --metrics "$metrics" --section MemoryWorkloadAnalysis_Tables \
      --launch-skip 2 --launch-count 1 --kernel-name regex:'fmha|sdpa|attn|fprop|cudnn|flash|sm90' \
      python3 tools/prof/one_launch.py "$d" "$s" "$causal" 4 "$who" > "$f" 2>&1 || echo "ncu $who $c failed"
    echo "== $who D=$d S=$s causal=$causal"; grep -E "^  [a-z_]|Kernel|fmha|sdpa|Shared|cudnn" "$f" | grep -v "^==PROF" | head -40
  done
done
