#!/usr/bin/env bash
# Builds build/libfmha_dev.so (torch-free) from the kernel sources, one variant
# (head dim x layout) per nvcc process (2 at a time here). Extra nvcc flags: $NVCC_EXTRA
# (e.g. NVCC_EXTRA=-DTORCH_FMHA_DEBUG_HANG=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
CUTLASS_INC=${CUTLASS_INC:-$(python3 -c "import cutlass_library,os;print(os.path.dirname(cutlass_library.__file__))")/source/include}
OUT=build/kdev
mkdir -p "$OUT"
FLAGS=(-std=c++17 -gencode=arch=compute_90a,code=sm_90a -O3 --expt-relaxed-constexpr
       -Xcompiler=-fPIC -I"$CUTLASS_INC" -Icsrc -Xptxas -v ${NVCC_EXTRA:-})
SRCS=(csrc/launch/fwd_fp8_hdim64.cu csrc/launch/fwd_fp8_hdim128.cu csrc/launch/fwd_fp8_hdim256.cu
      csrc/launch/fwd_fp8_hdim64_varlen.cu csrc/launch/fwd_fp8_hdim128_varlen.cu
      csrc/launch/fwd_fp8_hdim256_varlen.cu csrc/launch/varlen_prep.cu
      csrc/launch/dispatch_fwd.cu csrc/launch/hang_watch.cu tools/kernel_dev/c_shim.cu)
JOBS=${JOBS:-2}
pids=()
for s in "${SRCS[@]}"; do
  o="$OUT/$(basename "${s%.cu}").o"
  ( nvcc "${FLAGS[@]}" -c "$s" -o "$o" > "$o.log" 2>&1 || { cat "$o.log"; exit 1; } ) &
  pids+=($!)
  if (( ${#pids[@]} >= JOBS )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
grep -hE "spill|Used [0-9]+ registers" "$OUT"/fwd_fp8_hdim*.o.log || true
nvcc -shared -gencode=arch=compute_90a,code=sm_90a "$OUT"/*.o -o build/libfmha_dev.so -lcudart
echo "built build/libfmha_dev.so"
