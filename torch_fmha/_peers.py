"""Peer attention implementations that ``torch_fmha.bench`` compares against.

* :class:`CudnnFp8` -- cuDNN's FP8 flash attention through
  ``nvidia-cudnn-frontend`` (``import cudnn``), ``pygraph.sdpa_fp8``.
* :func:`sdpa_bf16` -- PyTorch ``scaled_dot_product_attention`` restricted to
  one backend (flash or cuDNN) with ``torch.nn.attention.sdpa_kernel``.

Nothing here imports ``cudnn`` at module import time: :class:`CudnnFp8` does it
on first use, and reports an unavailable frontend as a reason string instead of
raising, so that the benchmark can print "n/a" with that reason.

Layouts follow torch_fmha: tensors are ``[B, S, H, D]`` (last dim contiguous).
cuDNN and SDPA both take the logical shape ``[B, H, S, D]``; we hand them the
same memory through strides (a ``transpose(1, 2)`` view), so nothing is copied.

cuDNN FP8 semantics (per-tensor scaling, cudnn-frontend 1.14.1 on Hopper):
``S = attn_scale * descale_q * descale_k * Q K^T``; ``P = softmax(S)`` is
quantized to FP8 as ``P * scale_s`` and ``O = (P8 V) * descale_s * descale_v``;
the FP8 output is ``O * scale_o``. So with torch_fmha's ``out = o / out_scale``
convention, ``scale_o = 1 / out_scale``. ``amax_s`` / ``amax_o`` are written as
(unused) outputs. On Hopper the FP8 graph supports only FP8 output (the bf16
output graph is refused with "needs cuDNN >= 9.13 ... Blackwell") and only the
top-left causal mask (``use_causal_mask``), which equals bottom-right when
``Sq == Sk``.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

__all__ = ["CudnnFp8", "sdpa_bf16", "sdpa_backend_names", "P_SCALE"]

#: Scale applied to softmax probabilities before they are rounded to FP8 in
#: cuDNN (``scale_s``; ``descale_s = 1 / P_SCALE``). P lies in [0, 1]; 256 keeps
#: it in FP8's normal range and descales exactly (torch_fmha uses the same
#: fixed offset, see docs/DESIGN.md section 4).
P_SCALE = 256.0


def _bhsd_view(x: torch.Tensor) -> torch.Tensor:
    """``[B, S, H, D]`` -> ``[B, H, S, D]`` view sharing memory."""
    return x.transpose(1, 2)


class CudnnFp8:
    """cuDNN FP8 forward attention with graphs built once per shape and cached.

    Use :meth:`unavailable_reason` (``None`` when usable) before :meth:`prepare`.
    :meth:`prepare` returns a zero-argument callable that runs the attention
    into a preallocated output (suitable for timing) together with that output
    tensor (``[B, Sq, H, D]``), or raises ``PeerUnsupported`` with a reason.
    """

    class PeerUnsupported(RuntimeError):
        """cuDNN refused this shape / option (the message says why)."""

    def __init__(self) -> None:
        self._cudnn = None
        self._reason: Optional[str] = None
        self._loaded = False
        self._handle = None
        self._graphs: Dict[tuple, tuple] = {}

    # -- availability ------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            import cudnn  # noqa: PLC0415  (lazy on purpose: heavy, optional)
        except Exception as e:  # ImportError, or a libcudnn load failure
            self._reason = (f"nvidia-cudnn-frontend is not importable ({type(e).__name__}: {e}); "
                            "install nvidia-cudnn-frontend==1.14.1 for the cuDNN FP8 column")
            return
        if not hasattr(cudnn.pygraph, "sdpa_fp8"):
            self._reason = f"cudnn-frontend {getattr(cudnn, '__version__', '?')} has no pygraph.sdpa_fp8"
            return
        self._cudnn = cudnn
        try:
            self._handle = cudnn.create_handle()
        except Exception as e:
            self._reason = f"cudnn.create_handle() failed: {e}"
            self._cudnn = None

    def unavailable_reason(self) -> Optional[str]:
        """``None`` if cuDNN FP8 can be tried, else a one-line reason."""
        self._load()
        return self._reason

    def versions(self) -> Dict[str, object]:
        """Frontend and backend versions, for the JSON metadata."""
        self._load()
        if self._cudnn is None:
            return {"cudnn_frontend": None, "cudnn_backend": None}
        c = self._cudnn
        try:
            backend = c.backend_version()
        except Exception:
            backend = None
        return {"cudnn_frontend": getattr(c, "__version__", None), "cudnn_backend": backend}

    # -- graph construction ------------------------------------------------
    def _build(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
               softmax_scale: float, causal: bool, out_fp8: bool) -> tuple:
        cudnn = self._cudnn
        e4m3, f32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
        kw = dict(io_data_type=e4m3, intermediate_data_type=f32, compute_data_type=f32)
        try:
            graph = cudnn.pygraph(handle=self._handle, **kw)
        except TypeError:  # older frontends: no handle argument
            graph = cudnn.pygraph(**kw)

        def t(name: str, x: torch.Tensor) -> object:
            v = _bhsd_view(x)
            return graph.tensor(name=name, dim=list(v.shape), stride=list(v.stride()), data_type=e4m3)

        scalar = dict(dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32)
        q_t, k_t, v_t = t("q", q), t("k", k), t("v", v)
        names = ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")
        sc = {n: graph.tensor(name=n, **scalar) for n in names}
        args = dict(q=q_t, k=k_t, v=v_t, attn_scale=float(softmax_scale),
                    use_causal_mask=bool(causal), name="sdpa_fp8", **sc)
        try:
            o_t, _stats, amax_s_t, amax_o_t = graph.sdpa_fp8(generate_stats=False, **args)
        except TypeError:  # frontends before generate_stats: is_inference
            o_t, _stats, amax_s_t, amax_o_t = graph.sdpa_fp8(is_inference=True, **args)
        ov = _bhsd_view(out)
        o_t.set_output(True).set_dim(list(ov.shape)).set_stride(list(ov.stride()))
        o_t.set_data_type(e4m3 if out_fp8 else cudnn.data_type.BFLOAT16)
        for a in (amax_s_t, amax_o_t):
            a.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(f32)
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        workspace = torch.empty(max(1, graph.get_workspace_size()), device=q.device, dtype=torch.uint8)
        return graph, workspace, (q_t, k_t, v_t, o_t, amax_s_t, amax_o_t), sc

    def prepare(self, q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor,
                q_descale: torch.Tensor, k_descale: torch.Tensor, v_descale: torch.Tensor,
                *, causal: bool, softmax_scale: Optional[float] = None,
                out_scale: float = 1.0, out_dtype: torch.dtype = torch.float8_e4m3fn,
                ) -> Tuple[Callable[[], None], torch.Tensor]:
        """Build (or reuse) the graph for these shapes and bind these tensors.

        ``q8 [B, Sq, H, D]``, ``k8, v8 [B, Sk, H, D]`` float8_e4m3fn (same H:
        cuDNN FP8 here is used without GQA); descales: one-element float32
        tensors (per-tensor scaling). Returns ``(run, out)``: ``run()`` writes
        ``out`` ([B, Sq, H, D], FP8 holding ``o / out_scale``, or bf16).
        """
        reason = self.unavailable_reason()
        if reason:
            raise self.PeerUnsupported(reason)
        cudnn = self._cudnn
        B, Sq, H, D = q8.shape
        Sk = k8.shape[1]
        if k8.shape[2] != H:
            raise self.PeerUnsupported("cuDNN FP8 column is run without GQA (H != Hkv)")
        if causal and Sq != Sk:
            raise self.PeerUnsupported("cuDNN FP8 on Hopper has no bottom-right causal mask (Sq != Sk)")
        for x in (q_descale, k_descale, v_descale):
            if x.numel() != 1:
                raise self.PeerUnsupported("cuDNN FP8 column takes per-tensor descales only")
        softmax_scale = 1.0 / math.sqrt(D) if softmax_scale is None else float(softmax_scale)
        out_fp8 = out_dtype == torch.float8_e4m3fn
        out = torch.empty(B, Sq, H, D, device=q8.device, dtype=out_dtype)
        key = (B, Sq, Sk, H, D, q8.stride(), k8.stride(), v8.stride(), causal, out_fp8, softmax_scale)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._build(q8, k8, v8, out, softmax_scale, causal, out_fp8)
            except Exception as e:  # cudnnGraphNotSupportedError, RuntimeError, ...
                msg = str(e).strip().splitlines()
                raise self.PeerUnsupported(
                    f"cuDNN refused sdpa_fp8 graph ({type(e).__name__}: {msg[0] if msg else ''})") from e
            self._graphs[key] = entry
        graph, workspace, (q_t, k_t, v_t, o_t, amax_s_t, amax_o_t), sc = entry
        dev, f32 = q8.device, torch.float32

        def one(x: float | torch.Tensor) -> torch.Tensor:
            if isinstance(x, torch.Tensor):
                return x.reshape(1, 1, 1, 1).to(device=dev, dtype=f32).contiguous()
            return torch.full((1, 1, 1, 1), float(x), device=dev, dtype=f32)

        amax_s, amax_o = one(0.0), one(0.0)
        pack = {
            q_t: _bhsd_view(q8), k_t: _bhsd_view(k8), v_t: _bhsd_view(v8), o_t: _bhsd_view(out),
            amax_s_t: amax_s, amax_o_t: amax_o,
            sc["descale_q"]: one(q_descale), sc["descale_k"]: one(k_descale),
            sc["descale_v"]: one(v_descale), sc["descale_s"]: one(1.0 / P_SCALE),
            sc["scale_s"]: one(P_SCALE), sc["scale_o"]: one(1.0 / out_scale if out_fp8 else 1.0),
        }
        handle = self._handle

        def run() -> None:
            cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(dev).cuda_stream)
            graph.execute(pack, workspace, handle=handle)

        return run, out


def sdpa_backend_names() -> Dict[str, object]:
    """Column name -> ``torch.nn.attention.SDPBackend`` member (flash, cuDNN)."""
    from torch.nn.attention import SDPBackend
    return {"SDPA bf16 flash": SDPBackend.FLASH_ATTENTION,
            "SDPA bf16 cudnn": SDPBackend.CUDNN_ATTENTION}


def sdpa_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
              backend: object, softmax_scale: Optional[float] = None) -> Callable[[], torch.Tensor]:
    """A zero-argument callable running SDPA on one backend only.

    ``q [B, Sq, H, D]``, ``k, v [B, Sk, H, D]`` bf16, passed as ``[B, H, S, D]``
    transpose views. ``is_causal`` in SDPA is top-left aligned; the benchmark
    only uses it with ``Sq == Sk`` where that equals torch_fmha's bottom-right.
    The backend is forced through ``sdpa_kernel`` while the callable runs, so a
    backend that refuses the shape raises (``RuntimeError``), never falls back.
    """
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    qt, kt, vt = _bhsd_view(q), _bhsd_view(k), _bhsd_view(v)

    def run() -> torch.Tensor:
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=softmax_scale)

    return run
