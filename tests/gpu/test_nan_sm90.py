"""NaN / Inf semantics of the SM90 kernel == those of the CPU path.

Every case runs the same FP8 inputs through the CUDA and the CPU op, clean and
poisoned, and checks on the GPU result:
  * NaN / +inf / -inf at exactly the entries where the CPU op has them, and
    where the float64 oracle (tests/reference.py) has them;
  * every entry the poison did not change on the CPU is bitwise the GPU's run
    on the clean inputs (the poison reached nothing else; the clean run itself
    is checked against the oracle by test_fwd_sm90.py / test_varlen_sm90.py).
tests/test_nan.py checks the CPU side against independently computed
patterns. Skipped (with the reason) where there is no SM90 GPU (conftest.py).

Which of these need the kernel change of issue 13 (softmax.cuh: NaN is not
"empty" in finalize, non-finite / zero scales sanitized in reset; epilogue.cuh:
rows that see no key store exact zeros) is said per test.
"""

from __future__ import annotations

import math

import pytest
import torch

import torch_fmha
from inputs import FP8, dense_inputs, varlen_inputs
from kvcache_inputs import kvcache_inputs
from nan_cases import assert_same_pattern, assert_unchanged_except, as_float, set_value
from reference import attention_ref, kvcache_attention_ref, varlen_attention_ref

NAN, INF = math.nan, math.inf
B, H, HKV = 2, 4, 2


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dtype == FP8:
        return a.view(torch.uint8) == b.view(torch.uint8)
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def check_case(make, call, poison, ref_fn, what, *, all_affected=False):
    """make(device) -> inputs dict; call(inputs) -> (out, lse); poison(inputs)
    modifies them in place; ref_fn(inputs) -> (ref_out, ref_lse) float64.
    all_affected: the poison reaches every entry, so the "unchanged on CPU ->
    bitwise unchanged on CUDA" check does not apply (an entry can come out
    equal on the CPU by rounding coincidence alone)."""
    outs = {}
    for dev in ("cpu", "cuda"):
        x = make(dev)
        clean = call(x)
        poison(x)
        got = call(x)
        if dev == "cuda":
            torch.cuda.synchronize()
        outs[dev] = (clean, got, x)
    (c_clean, c_got, cx), (g_clean, g_got, gx) = outs["cpu"], outs["cuda"]
    scale = gx.get("out_scale")
    for i, name in enumerate(("out", "lse")):
        got_g = as_float(g_got[i], scale) if i == 0 else g_got[i]
        got_c = as_float(c_got[i], cx.get("out_scale")) if i == 0 else c_got[i]
        assert_same_pattern(got_g, got_c, f"{what}: {name} CUDA vs CPU")
        if not all_affected:
            changed_on_cpu = ~_bits_equal(c_got[i], c_clean[i])
            assert_unchanged_except(g_got[i], g_clean[i], changed_on_cpu, f"{what}: {name} CUDA vs clean")
    ref, ref_lse = ref_fn(gx)
    assert_same_pattern(as_float(g_got[0], scale), ref, f"{what}: out vs oracle")
    assert_same_pattern(g_got[1], ref_lse, f"{what}: lse vs oracle")
    return g_got


# ---- dense -------------------------------------------------------------------------


def dense(sq, sk, d, *, per_head=True, seed=0, shape=(B, H, HKV), **mask):
    def make(dev):
        b, h, hkv = shape
        q, k, v, s = dense_inputs(b, sq, sk, h, hkv, d, FP8, device=dev, per_head_descale=per_head,
                                  seed=seed)
        return dict(q=q, k=k, v=v, s=dict(s), mask=mask)

    def call(x):
        kw = dict(x["s"], **x["mask"])
        if "out_scale" in x:
            kw.update(out_dtype=FP8, out_scale=x["out_scale"])
        return torch_fmha.attention(x["q"], x["k"], x["v"], return_lse=True, **kw)

    def ref(x):
        return attention_ref(x["q"], x["k"], x["v"], **x["s"], **x["mask"])

    return make, call, ref


MASKS = {"full": {}, "causal": dict(causal=True), "window": dict(window_size=(150, 20))}


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("mask", MASKS)
def test_nan_in_one_q_element(mask, d):
    make, call, ref = dense(300, 300, d, seed=1, **MASKS[mask])
    check_case(make, call, lambda x: set_value(x["q"], (1, 200, 3, 7), NAN), ref, f"q D={d} {mask}")


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("mask", MASKS)
def test_nan_in_one_q_row_long_rows(mask, d):
    """A NaN q row leaves the other rows of its warp bitwise as they were, at a length
    where a row's max often stays put across blocks (S = 1024): a lazy O rescale decided
    for the whole warp (one vote of its 16 rows; session 16's first versions) rounds
    those rows differently wherever the NaN row, whose max stays -inf, turns a 'keep'
    into 'rescale'. A host model of that vote on these inputs (D = 256) flips it in the
    warp of rows 688..703 under every mask (the bits were not seen on a GPU); the
    S = 300 cases above seldom reach a keep. The release builds do not rescale lazily;
    with TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TUNE_LAZY_RESCALE_<D>=1 this checks the
    per-row form (softmax.cuh, update_max)."""
    make, call, ref = dense(1024, 1024, d, seed=1, **MASKS[mask])
    check_case(make, call, lambda x: set_value(x["q"], (1, 700, 3, 7), NAN), ref,
               f"q D={d} S=1024 {mask}")


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("mask", MASKS)
def test_nan_in_one_k_element(mask, d):
    """Rows that see the key: NaN out and lse; rows that do not (causal: the
    rows before it, window: rows far from it, other heads and batches):
    bitwise unchanged, including the rows of the same tile."""
    make, call, ref = dense(300, 300, d, seed=2, **MASKS[mask])
    out, _ = check_case(make, call, lambda x: set_value(x["k"], (1, 170, 1, 3), NAN), ref,
                        f"k D={d} {mask}")
    assert torch.isnan(out.float()).any()


@pytest.mark.parametrize("d,s", [(64, 1200), (128, 2100)])
def test_nan_in_one_k_element_long_build(d, s):
    """The long builds with a partial last block (D=64: 256-key blocks, keys 1024..;
    D=128 past short_keys_max_seqlen(128), where the cases above, 300 keys, run the
    short-key build: 192-key blocks, keys 1920..), NaN at key s - 100 of that block,
    window (150, 20), at D=128 (1950, 20) (a span past short_keys_max_window_span(128),
    which would run the short build too): rows s - 120.. see it, rows of the same tile
    before them do not."""
    window = (1950, 20) if d == 128 else (150, 20)
    make, call, ref = dense(s, s, d, seed=10, window_size=window)
    out, _ = check_case(make, call, lambda x: set_value(x["k"], (1, s - 100, 1, 3), NAN), ref,
                        f"k D={d} S={s} window")
    assert torch.isnan(out.float()).any()


@pytest.mark.parametrize("d", [64, 128, 256])
def test_nan_in_one_v_element(d):
    """No mask: out[:, :, heads of the group, column d] NaN for every row, lse untouched."""
    make, call, ref = dense(300, 300, d, seed=3)
    check_case(make, call, lambda x: set_value(x["v"], (1, 170, 1, 3), NAN), ref, f"v D={d}")


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("tensor,index", [("q", (0, 1700, 12, 7)), ("k", (0, 300, 12, 3)),
                                          ("k", (0, -148, 12, 3)), ("v", (0, -148, 12, 3))])
def test_nan_in_split_tail(d, tensor, index):
    """The split tail (tile_scheduler.cuh), at D = 64 and D = 128 in the release (in a build
    without it a plain dense NaN case): 272 tiles on 132 SMs, head 12's tiles in the tail, most
    of them cut in two pieces merged by their LSEs. D = 64: 2048 keys, 8 blocks of 256
    (m-blocks 9-12 stay whole; the q row, 1700, is in m-block 13, a cut one); D = 128: 8192 keys
    (test_fwd_sm90.split_keys), 43 blocks of 192, so that its tiles reach the threshold of 32.
    A NaN in a key near either end of the sequence (key 300, and the key 148 before the end: the
    lower piece of one cut tile and the upper piece of another), in a value or in a q row reaches exactly
    the rows and columns it reaches unsplit, and the other rows keep their bits."""
    from test_fwd_sm90 import split_keys
    make, call, ref = dense(2048, split_keys(d, 2048), d, seed=11, shape=(1, 17, 17))
    check_case(make, call, lambda x: set_value(x[tensor], index, NAN), ref,
               f"{tensor}{index} D={d} split tail")


@pytest.mark.xfail(strict=False, reason=(
    "P V on the tensor cores gives 0 * NaN = NaN at keys masked for a row inside a KV block its "
    "tile visits; no zero-cost kernel fix (issue 13 report). PyTorch SDPA (math / flash) puts "
    "that NaN in every row of the column (docs/DESIGN.md 1.6)"))
@pytest.mark.parametrize("mask", ["causal", "window"])
def test_nan_in_v_at_masked_key(mask):
    make, call, ref = dense(300, 300, 128, seed=4, **MASKS[mask])
    check_case(make, call, lambda x: set_value(x["v"], (1, 170, 1, 3), NAN), ref, f"v {mask}")


def test_nan_in_masked_k_rows():
    """Causal: NaN in every k element of keys 200..299 (visible to rows >=
    200 only) leaves rows < 200 bitwise unchanged, in the tiles that visit
    those keys' blocks too. Needs no kernel change (the mask is a select)."""
    make, call, ref = dense(300, 300, 128, seed=5, causal=True)
    check_case(make, call, lambda x: set_value(x["k"], (slice(None), slice(200, 300)), NAN), ref,
               "masked k")


SCALES = [("q_descale", NAN), ("k_descale", NAN), ("q_descale", INF), ("k_descale", -INF),
          ("q_descale", -INF), ("v_descale", NAN)]


@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
@pytest.mark.parametrize("name,value", SCALES, ids=[f"{n}={v}" for n, v in SCALES])
def test_nonfinite_descale(name, value, per_head):
    """Causal with Sq > Sk: rows < 100 see no key and must stay 0 / -inf; every
    other row of the poisoned (batch, kv head) is NaN (out, and lse unless it
    is v_descale). Needs the softmax.cuh change (NaN / -inf scale:
    reset) and the epilogue.cuh change (v_descale NaN on rows that see nothing)."""
    make, call, ref = dense(400, 300, 128, per_head=per_head, seed=6, causal=True)

    def poison(x):
        t = x["s"][name].clone()
        if per_head:
            t[1, 0] = value
        else:
            t.fill_(value)
        x["s"][name] = t

    out, lse = check_case(make, call, poison, ref, f"{name}={value}")
    assert (out[:, :100].float() == 0).all() and torch.isneginf(lse[:, :, :100]).all()


def test_inf_v_descale():
    """out = (P V / l) * v_descale: +-inf with the sign of the clean output
    (compared with the GPU's own clean run: P V differs from the CPU's in the
    last bits, so a tiny value may differ in sign), NaN where it is 0; rows
    that see no key stay 0. Needs the epilogue.cuh change for those rows."""
    make, call, _ = dense(400, 300, 128, seed=12, causal=True)
    x = make("cuda")
    x["v"].view(torch.uint8)[:, :, 0, 0] = 0  # column 0 of kv head 0 all zero: out exactly 0
    clean, _ = call(x)
    x["s"]["v_descale"] = torch.full_like(x["s"]["v_descale"], INF)
    out, lse = call(x)
    torch.cuda.synchronize()
    c = clean.double()
    want = torch.where(c == 0, NAN, c * INF)
    want[:, :100] = 0.0
    assert torch.isnan(want).any() and torch.isinf(want).any()
    assert_same_pattern(out.double(), want, "out")
    assert (out[:, :100].float() == 0).all()


def test_zero_q_descale():
    """q_descale = 0: every visible score is 0, so out is the mean of the
    visible v and lse = log(#visible keys); masked keys must still be 0, not
    0 * -inf = NaN. Needs the softmax.cuh change (zero scale in reset)."""
    make, call, ref = dense(300, 300, 128, seed=7, causal=True)

    def poison(x):
        x["s"]["q_descale"] = torch.zeros_like(x["s"]["q_descale"])

    out, lse = check_case(make, call, poison, ref, "q_descale=0", all_affected=True)
    assert torch.isfinite(out.float()).all()
    n = torch.arange(1, 301, device="cuda", dtype=torch.float64).log()
    assert (lse.double() - n).abs().max() < 1e-4


def test_nan_fp8_output():
    """FP8 output: NaN rows store e4m3 NaN, never a saturated +-448."""
    make0, call, ref = dense(300, 300, 128, seed=8, causal=True)

    def make(dev):
        x = make0(dev)
        x["out_scale"] = torch.tensor([0.02], device=dev)
        return x

    check_case(make, call, lambda x: set_value(x["k"], (0, 100, 0, 0), NAN), ref, "fp8 out")


def test_empty_rows_with_nan_v():
    """Causal with Sq > Sk: rows < 100 see no key but share tiles with rows
    that see a NaN v; they must stay exactly 0. Needs the epilogue.cuh change."""
    make, call, ref = dense(400, 300, 128, seed=9, causal=True)
    out, _ = check_case(make, call, lambda x: set_value(x["v"], (1, 0, 1, 3), NAN), ref,
                        "empty rows + NaN v")
    assert (out[:, :100].float() == 0).all()


# ---- varlen ------------------------------------------------------------------------


def varlen(lens_q, lens_k, d, *, seed=0, **mask):
    def make(dev):
        q, k, v, cq, ck, s = varlen_inputs(lens_q, lens_k, H, HKV, d, FP8, device=dev, seed=seed)
        return dict(q=q, k=k, v=v, cq=cq, ck=ck, s=dict(s), mask=mask)

    def call(x):
        return torch_fmha.varlen_attention(x["q"], x["k"], x["v"], x["cq"], x["ck"], return_lse=True,
                                           **x["s"], **x["mask"])

    def ref(x):
        return varlen_attention_ref(x["q"], x["k"], x["v"], x["cq"], x["ck"], **x["s"], **x["mask"])

    return make, call, ref


LENS_Q, LENS_K = [70, 130, 0, 200, 90], [100, 64, 20, 250, 50]
CU_K = [0] + torch.tensor(LENS_K).cumsum(0).tolist()


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("causal", [False, True])
def test_varlen_nan_sequence_does_not_leak(causal, d):
    """All k and v of sequence 1 NaN: its rows are NaN; sequences 0 and 3,
    whose last / first KV blocks reach into those keys, are bitwise unchanged."""
    make, call, ref = varlen(LENS_Q, LENS_K, d, seed=10, causal=causal)

    def poison(x):
        for t in (x["k"], x["v"]):
            set_value(t, (slice(CU_K[1], CU_K[2]),), NAN)

    check_case(make, call, poison, ref, f"varlen seq D={d} causal={causal}")


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_nan_elements_and_descale(causal):
    """One NaN in q, one in k, one in v of different sequences, and a NaN
    per-sequence q_descale for one kv head of another."""
    make, call, ref = varlen(LENS_Q, LENS_K, 128, seed=11, causal=causal)

    def poison(x):
        set_value(x["q"], (75, 2, 0), NAN)                  # sequence 1
        set_value(x["k"], (CU_K[3] + 240, 0, 5), NAN)       # sequence 3, near its end
        set_value(x["v"], (CU_K[0], 1, 9), NAN)              # sequence 0, key 0 (seen by all its rows)
        x["s"]["q_descale"] = x["s"]["q_descale"].clone()
        x["s"]["q_descale"][4, 1] = NAN                      # sequence 4, kv head 1

    check_case(make, call, poison, ref, f"varlen elements causal={causal}")


# ---- decode kernel (attention_with_kvcache, FP8, Sq = 1: csrc/kernel/decode.cuh) -----------


def decode(d, *, page_size=None, seed=0):
    """B = 3 (an empty cache, 40 keys, 1000 keys: every warp of a split has several 32-key
    tiles), H = 16, Hkv = 4 (G = 4 rows of the mma tile), per-(batch, kv head) descales,
    3 splits; the step runs the decode kernel and the merge on CUDA, the split plan on CPU."""
    def make(dev):
        q, kc, vc, seqlens, table, s = kvcache_inputs(3, 1, 16, 4, d, FP8, [0, 40, 1000], smax=1024,
                                                      page_size=page_size, device=dev, seed=seed)
        return dict(q=q, k=kc, v=vc, lens=seqlens, table=table, s=dict(s))

    def call(x):
        return torch_fmha.attention_with_kvcache(x["q"], x["k"], x["v"], x["lens"], page_table=x["table"],
                                                 causal=True, num_splits=3, return_lse=True, **x["s"])

    def ref(x):
        return kvcache_attention_ref(x["q"], x["k"], x["v"], x["lens"], page_table=x["table"], causal=True,
                                     **x["s"])

    return make, call, ref


@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("what", ["q", "k", "v"])
def test_decode_kernel_nan_element(what, d):
    """One NaN in q (query head 5 of batch 2), k or v (key 500 of batch 2, kv head 1):
    q / k make the rows that see it NaN (q: that head only, k: the 4 heads of kv head 1),
    v only column 3 of those heads; every other entry bitwise the clean run's, the empty
    sequence 0 / -inf."""
    make, call, ref = decode(d, seed=20)
    index = (2, 0, 5, 7) if what == "q" else (2, 500, 1, 3)
    out, lse = check_case(make, call, lambda x: set_value(x[what], index, NAN), ref, f"decode {what} D={d}")
    assert torch.isnan(out.float()).any()
    assert (out[0].float() == 0).all() and torch.isneginf(lse[0]).all()


DECODE_SCALES = [("q_descale", NAN), ("k_descale", NAN), ("q_descale", INF), ("k_descale", -INF),
                 ("q_descale", 0.0), ("v_descale", NAN)]


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
@pytest.mark.parametrize("name,value", DECODE_SCALES, ids=[f"{n}={v}" for n, v in DECODE_SCALES])
def test_decode_kernel_nonfinite_descale(name, value, page_size):
    """descale[2, 1] (batch 2, kv head 1) non-finite or 0: NaN / inf / 0 exactly where the CPU
    op and the oracle have them (a zero scale: uniform weights, finite), the other (batch, kv
    head) pairs bitwise unchanged, the empty sequence 0 / -inf."""
    make, call, ref = decode(128, page_size=page_size, seed=21)

    def poison(x):
        t = x["s"][name].clone()
        t[2, 1] = value
        x["s"][name] = t

    out, lse = check_case(make, call, poison, ref, f"decode {name}={value}")
    assert (out[0].float() == 0).all() and torch.isneginf(lse[0]).all()


# ---- decode kernel, Sq > 1 (Sq 3 x G 4 = 12 rows, per-row bottom-right masks) -------------


def decode_sq3(**mask):
    """B = 3 with 2, 40 and 1000 keys (Sq = 3: row 0 of the first sequence sees no key), H = 16,
    Hkv = 4, per-(batch, kv head) descales, 3 splits: the decode kernel and the merge on CUDA
    (every mask in the kernel), the plans on CPU."""
    def make(dev):
        q, kc, vc, seqlens, table, s = kvcache_inputs(3, 3, 16, 4, 128, FP8, [2, 40, 1000], smax=1024,
                                                      device=dev, seed=22)
        return dict(q=q, k=kc, v=vc, lens=seqlens, table=table, s=dict(s))

    def call(x):
        return torch_fmha.attention_with_kvcache(x["q"], x["k"], x["v"], x["lens"], num_splits=3,
                                                 return_lse=True, **mask, **x["s"])

    def ref(x):
        return kvcache_attention_ref(x["q"], x["k"], x["v"], x["lens"], **mask, **x["s"])

    return make, call, ref


def _empty_row_stays_zero(out, lse):
    # Sequence 0 (2 keys), query row 0 sees key <= 2 - 3 + 0 < 0: no key, whatever the poison.
    assert (out[0, 0].float() == 0).all() and torch.isneginf(lse[0, :, 0]).all()


@pytest.mark.parametrize("what", ["q", "k", "v"])
def test_decode_kernel_sq3_nan_element(what):
    """Causal. One NaN in q (batch 2, query row 1, head 5: that row and head only), k or v (key 500
    of batch 2, kv head 1, which all three rows see: k the 4 heads of kv head 1 in every row, v
    their column 3); every other entry bitwise the clean run's."""
    make, call, ref = decode_sq3(causal=True)
    index = (2, 1, 5, 7) if what == "q" else (2, 500, 1, 3)
    out, lse = check_case(make, call, lambda x: set_value(x[what], index, NAN), ref, f"decode sq3 {what}")
    assert torch.isnan(out.float()).any()
    _empty_row_stays_zero(out, lse)


# (mask, keys of batch 2 whose k is NaN): causal, keys 998 / 999 are seen by rows 1-2 / 2 only;
# window (20, 0), key 977 by row 0 only (row i sees [977 + i, 997 + i]). The rows that do not
# see them share their 32-key tile and must stay bitwise clean (the mask is a select).
MASKED_K = [("causal", dict(causal=True), slice(998, 1000)),
            ("window", dict(causal=True, window_size=(20, 0)), slice(977, 978))]


@pytest.mark.parametrize("name,mask,keys", MASKED_K, ids=[m[0] for m in MASKED_K])
def test_decode_kernel_sq3_nan_in_k_of_masked_keys(name, mask, keys):
    make, call, ref = decode_sq3(**mask)
    out, lse = check_case(make, call, lambda x: set_value(x["k"], (2, keys), NAN), ref, f"decode sq3 k {name}")
    assert torch.isnan(out.float()).any()
    _empty_row_stays_zero(out, lse)


@pytest.mark.xfail(strict=False, reason=(
    "As the prefill kernel (test_nan_in_v_at_masked_key, docs/DESIGN.md 1.6): P V on the tensor "
    "cores gives 0 * NaN = NaN for rows 0-1, whose causal mask hides key 999 of the 32-key tile "
    "they share with row 2"))
def test_decode_kernel_sq3_nan_in_v_at_masked_key():
    make, call, ref = decode_sq3(causal=True)
    check_case(make, call, lambda x: set_value(x["v"], (2, 999, 1, 3), NAN), ref, "decode sq3 v masked")
