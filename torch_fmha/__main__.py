"""``python -m torch_fmha``: what this machine can run, demonstrated.

On an SM90 (Hopper) GPU with the CUDA kernels built, it runs the side-by-side
benchmark (``torch_fmha.bench``). Anywhere else it runs the CPU path on a
small FP8 problem, checks it against a float64 reference (PyTorch SDPA on the
dequantized inputs, independent of torch_fmha's code) and prints a table.
"""

from __future__ import annotations

import sys
import time

import torch

import torch_fmha


def _cpu_demo() -> int:
    rows = []
    g = torch.Generator().manual_seed(0)
    for b, s, h, hkv, d, causal in [(2, 256, 4, 2, 128, False), (2, 256, 4, 2, 128, True),
                                    (1, 1000, 8, 1, 64, True), (1, 200, 2, 2, 256, False)]:
        q = torch.randn(b, s, h, d, generator=g)
        k = torch.randn(b, s, hkv, d, generator=g)
        v = torch.randn(b, s, hkv, d, generator=g)
        q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=h // hkv)
        k8, kd = torch_fmha.quantize_fp8(k, "head")
        v8, vd = torch_fmha.quantize_fp8(v, "head")
        t0 = time.perf_counter()
        out = torch_fmha.attention(q8, k8, v8, causal=causal, q_descale=qd, k_descale=kd, v_descale=vd)
        ms = (time.perf_counter() - t0) * 1e3
        # float64 reference on the dequantized inputs, through PyTorch SDPA.
        deq = [(x8.double() * dd.double().repeat_interleave(x8.size(2) // dd.size(1), 1)[:, None, :, None])
               .transpose(1, 2) for x8, dd in ((q8, qd), (k8, kd), (v8, vd))]
        ref = torch.nn.functional.scaled_dot_product_attention(*deq, is_causal=causal, enable_gqa=True)
        ref = ref.transpose(1, 2)
        err = (out.double() - ref).abs().max().item()
        rel = ((out.double() - ref).norm() / ref.norm()).item()
        rows.append((f"[{b}, {s}, {h}/{hkv}, {d}]", causal, err, rel, ms))
    print("torch_fmha CPU path, FP8 e4m3 inputs (per-head descales), bf16 output, vs float64 reference")
    print(f"{'q [B, S, H/Hkv, D]':<22}{'causal':<8}{'max|err|':>10}{'rel err':>10}{'time ms':>10}")
    for shape, causal, err, rel, ms in rows:
        print(f"{shape:<22}{str(causal):<8}{err:>10.2e}{rel:>10.2e}{ms:>10.1f}")
    bad = [r for r in rows if not r[3] < 1e-2]
    print()
    print("The FP8 kernel needs an NVIDIA SM90 (Hopper) GPU; none is available here, so this ran the CPU path.")
    return 1 if bad else 0


def main() -> int:
    if not (torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)):
        return _cpu_demo()
    reason = torch_fmha.sm90_unavailable_reason()
    if reason:
        print(f"torch_fmha: an SM90 GPU is present but {reason}")
        return 2
    from torch_fmha import bench

    return bench.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
