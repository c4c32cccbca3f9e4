"""Tests of llmbook.attention: SDPA (explicit and fused), masks, GQA, the layer, the KV cache.

Tolerances: everything is compared in float64 with ``atol=1e-12, rtol=0``. Outputs are
O(1) and each entry is a sum of at most a few dozen products and exponentials (T_k <= 12,
d_head <= 8, d_model <= 16), so two correct implementations that order their floating-point
operations differently (explicit vs torch's kernels, one token at a time vs the whole
sequence) differ by about 1e-15; 1e-12 leaves three orders of margin. A real error — a
missing 1/sqrt(d), a mask shifted by one position, the wrong key/value head for a query
head — changes outputs by 1e-2 or more, which these tests would catch.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook import attention as att

TOL = {"atol": 1e-12, "rtol": 0.0}
F64 = torch.float64


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


def qkv(B=2, H=4, H_kv=4, T_q=5, T_k=5, d=8, seed=0):
    return (
        rand(B, H, T_q, d, seed=seed),
        rand(B, H_kv, T_k, d, seed=seed + 1),
        rand(B, H_kv, T_k, d, seed=seed + 2),
    )


def loop_reference(q, k, v, allowed):
    """softmax(q k^T / sqrt d) v, one (batch, head, query) at a time, in plain Python."""
    B, H, T_q, d = q.shape
    n_rep = H // k.shape[1]
    out = torch.zeros(B, H, T_q, v.shape[-1], dtype=F64)
    for b in range(B):
        for h in range(H):
            for i in range(T_q):
                js = [j for j in range(k.shape[2]) if allowed[i][j]]
                if not js:
                    continue
                s = [float(q[b, h, i] @ k[b, h // n_rep, j]) / math.sqrt(d) for j in js]
                m = max(s)
                w = [math.exp(x - m) for x in s]
                for wj, j in zip(w, js, strict=True):
                    out[b, h, i] += wj / sum(w) * v[b, h // n_rep, j]
    return out


# ------------------------------------------------------------------------------- masks
def test_causal_mask_known_values_and_offset():
    assert torch.equal(att.causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    # two new queries after three cached positions: default offset T_k - T_q = 3
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool()
    assert torch.equal(att.causal_mask(2, 5), expected)
    assert torch.equal(att.causal_mask(2, 5, offset=3), expected)
    assert torch.equal(att.causal_mask(2, 5, offset=0), torch.ones(2, 5).bool().tril())


def test_sliding_window_mask_matches_its_definition():
    for T_q, T_k, w, off in [(6, 6, 2, 0), (6, 6, 1, 0), (3, 8, 3, 5), (4, 4, 10, 0)]:
        m = att.sliding_window_mask(T_q, T_k, window=w, offset=off)
        ref = torch.tensor([[off + i - w < j <= off + i for j in range(T_k)] for i in range(T_q)])
        assert torch.equal(m, ref)
    assert torch.equal(att.sliding_window_mask(5, window=5), att.causal_mask(5))
    assert att.sliding_window_mask(5, window=1).sum() == 5  # the diagonal only


def test_padding_mask_and_combine():
    m = att.padding_mask([3, 1], 4)
    assert m.shape == (2, 1, 1, 4)
    assert torch.equal(m[:, 0, 0], torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]).bool())
    assert torch.equal(att.padding_mask(torch.tensor([3, 1]), 4), m)
    both = att.combine_masks(att.causal_mask(4), m, None)
    assert both.shape == (2, 1, 4, 4)
    assert torch.equal(both[1, 0, :, 0], torch.ones(4).bool())
    assert not both[1, 0, 3, 1:].any() and not both[0, 0, 1, 2:].any()
    assert att.combine_masks(None, None) is None


def test_repeat_kv_groups_heads():
    x = rand(1, 2, 3, 4)
    r = att.repeat_kv(x, 3)
    assert r.shape == (1, 6, 3, 4)
    for h in range(6):
        assert torch.equal(r[:, h], x[:, h // 3])
    assert att.repeat_kv(x, 1) is x


# --------------------------------------------------------------------------- attention
MASKS = ["none", "causal", "padding", "sliding", "causal+padding"]


def make_mask(kind, B, T):
    pad = att.padding_mask([T, T - 2][:B], T)
    return {
        "none": None,
        "causal": att.causal_mask(T),
        "padding": pad,
        "sliding": att.sliding_window_mask(T, window=2),
        "causal+padding": att.combine_masks(att.causal_mask(T), pad),
    }[kind]


@pytest.mark.parametrize("H_kv", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("kind", MASKS)
def test_explicit_equals_fused_and_loop_reference(kind, H_kv):
    q, k, v = qkv(H_kv=H_kv, T_q=6, T_k=6)
    mask = make_mask(kind, 2, 6)
    out, w = att.scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    fused = att.scaled_dot_product_attention(q, k, v, mask, implementation="fused")
    torch.testing.assert_close(out, fused, **TOL)
    # torch's own kernel on repeated heads (no NaN-guard involved: no row is empty here)
    n_rep = 4 // H_kv
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, att.repeat_kv(k, n_rep), att.repeat_kv(v, n_rep), attn_mask=mask
    )
    torch.testing.assert_close(out, ref, **TOL)
    if kind in ("none", "causal", "sliding"):
        allowed = torch.ones(6, 6).bool() if mask is None else mask
        torch.testing.assert_close(out, loop_reference(q, k, v, allowed.tolist()), **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6, dtype=F64), **TOL)


def test_float_bias_equals_boolean_mask_and_cross_attention_shapes():
    q, k, v = qkv(H_kv=2, T_q=3, T_k=7)
    mask = att.causal_mask(3, 7)  # queries are the last 3 of 7 positions
    bias = torch.zeros(3, 7, dtype=F64).masked_fill(~mask, -math.inf)
    layer = att.MultiHeadAttention(16, 4, 2).to(F64)
    x, key_bias = rand(2, 5, 16), rand(5, seed=9)  # a float bias on keys, plus causality
    allowed = att.causal_mask(5)
    torch.testing.assert_close(
        layer(x, mask=key_bias), layer(x, mask=key_bias.masked_fill(~allowed, -math.inf)), **TOL
    )
    for impl in att.IMPLEMENTATIONS:
        a = att.scaled_dot_product_attention(q, k, v, mask, implementation=impl)
        b = att.scaled_dot_product_attention(q, k, v, bias, implementation=impl)
        assert a.shape == (2, 4, 3, 8)
        torch.testing.assert_close(a, b, **TOL)


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = qkv(H_kv=2)
    mask = att.causal_mask(5).clone()
    mask[2] = False  # query 2 may attend to nothing
    bias = torch.zeros(5, 5, dtype=F64).masked_fill(~mask, -math.inf)
    out, w = att.scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    for m in (mask, bias):
        for impl in att.IMPLEMENTATIONS:
            o = att.scaled_dot_product_attention(q, k, v, m, implementation=impl)
            assert not o.isnan().any()
            assert torch.equal(o[:, :, 2], torch.zeros_like(o[:, :, 2]))
            torch.testing.assert_close(o, out, **TOL)
    assert torch.equal(w[:, :, 2], torch.zeros_like(w[:, :, 2]))
    assert not out[:, :, [0, 1, 3, 4]].eq(0).all(-1).any()  # the other rows are untouched
    # a sequence of length 0 in a padded batch: every query of it is empty
    o = att.scaled_dot_product_attention(
        q, k, v, att.padding_mask([0, 5], 5), implementation="fused"
    )
    assert torch.equal(o[0], torch.zeros_like(o[0])) and not o.isnan().any()


def test_gradients_finite_through_a_fully_masked_row():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, H_kv=1, T_q=3, T_k=3, d=4))
    mask = att.causal_mask(3).clone()
    mask[1] = False
    bias = torch.zeros(3, 3, dtype=F64).masked_fill(~mask, -math.inf)
    for m in (mask, bias):
        for impl in att.IMPLEMENTATIONS:
            q.grad = k.grad = v.grad = None
            att.scaled_dot_product_attention(q, k, v, m, implementation=impl).sum().backward()
            assert all(t.grad.isfinite().all() for t in (q, k, v))
            assert torch.equal(q.grad[0, :, 1], torch.zeros(2, 4, dtype=F64))


def test_gradcheck_explicit_path():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, H_kv=1, T_q=3, T_k=3, d=4))
    mask = att.causal_mask(3)
    assert torch.autograd.gradcheck(
        lambda q, k, v: att.scaled_dot_product_attention(q, k, v, mask), (q, k, v)
    )


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 8),
    window=st.integers(1, 9),
    log_scale=st.floats(-2.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_weights_are_a_distribution_zero_outside_the_window(T, window, log_scale, seed):
    q, k, v = qkv(B=1, H=2, H_kv=1, T_q=T, T_k=T, d=4, seed=seed)
    q = q * 10**log_scale  # up to 1000x: large logits must not overflow
    mask = att.sliding_window_mask(T, window=window)
    out, w = att.scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert out.isfinite().all() and w.isfinite().all() and (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, T, dtype=F64), **TOL)
    assert torch.equal(w[..., ~mask], torch.zeros_like(w[..., ~mask]))


# --------------------------------------------------------------------------- the layer
def torch_mha_and_ours(d_model=16, n_head=4, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(d_model, n_head, bias=bias, batch_first=True, dtype=F64)
    ours = att.MultiHeadAttention(d_model, n_head, bias=bias).to(F64)
    with torch.no_grad():
        wq, wk, wv = ref.in_proj_weight.chunk(3)
        for proj, w in ((ours.q_proj, wq), (ours.k_proj, wk), (ours.v_proj, wv)):
            proj.weight.copy_(w)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            bq, bk, bv = (rand(16, seed=s) for s in (7, 8, 9))  # torch initialises biases to 0
            ref.in_proj_bias.copy_(torch.cat((bq, bk, bv)))
            ref.out_proj.bias.copy_(rand(16, seed=10))
            for proj, b in ((ours.q_proj, bq), (ours.k_proj, bk), (ours.v_proj, bv)):
                proj.bias.copy_(b)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ref, ours


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_matches_torch_multihead_attention(causal, bias):
    ref, ours = torch_mha_and_ours(bias=bias)
    x = rand(2, 6, 16, seed=3)
    attn_mask = ~att.causal_mask(6) if causal else None  # torch: True = may NOT attend
    y_ref, w_ref = ref(x, x, x, attn_mask=attn_mask, need_weights=True)
    y, w = ours(x, return_weights=True, is_causal=causal)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(w.mean(dim=1), w_ref, **TOL)  # torch averages over heads
    ours.implementation = "fused"
    torch.testing.assert_close(ours(x, is_causal=causal), y_ref, **TOL)


def test_matches_torch_multihead_attention_with_key_padding():
    ref, ours = torch_mha_and_ours()
    x = rand(2, 6, 16, seed=4)
    lengths = [6, 4]
    pad = att.padding_mask(lengths, 6)
    y_ref, w_ref = ref(x, x, x, key_padding_mask=~pad[:, 0, 0], attn_mask=~att.causal_mask(6))
    y, w = ours(x, mask=pad, return_weights=True)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(w.mean(dim=1), w_ref, **TOL)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("impl", att.IMPLEMENTATIONS)
def test_kv_cache_decoding_equals_full_causal_forward(impl, n_kv_head):
    torch.manual_seed(0)
    layer = att.MultiHeadAttention(16, 4, n_kv_head, implementation=impl).to(F64)
    assert layer.k_proj.out_features == 4 * n_kv_head
    x = rand(2, 7, 16, seed=5)
    full = layer(x)
    with torch.no_grad():
        for chunks in ([1] * 7, [3, 1, 2, 1]):  # one token at a time; chunked prefill
            cache = att.KVCache(max_len=8)
            outs, start = [], 0
            for n in chunks:
                outs.append(layer(x[:, start : start + n], kv_cache=cache))
                start += n
                assert cache.length == start
            torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)
    # without the causal mask the last position differs from the first: the test can fail
    assert not torch.allclose(layer(x, is_causal=False)[:, 0], full[:, 0], atol=1e-3)


def test_kv_cache_with_sliding_window_mask_and_reset():
    torch.manual_seed(1)
    layer = att.MultiHeadAttention(16, 4, 2).to(F64)
    x = rand(1, 6, 16, seed=6)
    full = layer(x, mask=att.sliding_window_mask(6, window=3))
    cache = att.KVCache(max_len=6)
    with torch.no_grad():
        layer(x[:, :2], kv_cache=cache)
        cache.reset()
        assert cache.length == 0
        outs = [
            layer(x[:, t : t + 1], mask=att.sliding_window_mask(1, t + 1, window=3), kv_cache=cache)
            for t in range(6)
        ]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


def test_kv_cache_truncate_rolls_back_to_a_prefix():
    # speculative decoding writes tokens that are then rejected: after truncating to the
    # kept prefix and appending other tokens, the outputs equal a full forward on the
    # sequence actually kept (exact up to float64 round-off)
    torch.manual_seed(2)
    layer = att.MultiHeadAttention(16, 4, 2).to(F64)
    x, wrong = rand(1, 6, 16, seed=7), rand(1, 3, 16, seed=8)
    cache = att.KVCache(max_len=8)
    with torch.no_grad():
        layer(x[:, :3], kv_cache=cache)
        layer(wrong, kv_cache=cache)  # three positions that will be rejected
        assert cache.length == 6
        cache.truncate(3)
        assert cache.length == 3
        tail = layer(x[:, 3:], kv_cache=cache)
        assert not torch.allclose(layer(x)[:, 3:], layer(torch.cat([x[:, :3], wrong], 1))[:, 3:])
    torch.testing.assert_close(tail, layer(x)[:, 3:], **TOL)
    with pytest.raises(ValueError, match="length"):
        cache.truncate(7)  # beyond what is stored
    with pytest.raises(ValueError, match="length"):
        cache.truncate(-1)


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error():
    q, k, v = qkv(H=4, H_kv=2)
    sdpa = att.scaled_dot_product_attention
    with pytest.raises(ValueError, match="implementation"):
        sdpa(q, k, v, implementation="flash")
    with pytest.raises(ValueError, match="return_weights"):
        sdpa(q, k, v, implementation="fused", return_weights=True)
    with pytest.raises(ValueError, match="head dimension"):
        sdpa(q, k[..., :4], v)
    with pytest.raises(ValueError, match="must divide"):
        sdpa(q, rand(2, 3, 5, 8), rand(2, 3, 5, 8))
    with pytest.raises(ValueError, match="batch size"):
        sdpa(q, k[:1], v[:1])
    with pytest.raises(ValueError, match="k and v"):
        sdpa(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="4-d"):
        sdpa(q[0], k, v)
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, att.causal_mask(5, 6, offset=0))
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, torch.ones(1, 1, 1, 5, 5).bool())
    with pytest.raises(ValueError, match="bool"):
        sdpa(q, k, v, torch.ones(5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="scale"):
        sdpa(q, k, v, scale=0.0)
    with pytest.raises(ValueError, match="window"):
        att.sliding_window_mask(4, window=0)
    with pytest.raises(ValueError, match="offset"):
        att.causal_mask(4, 2)
    with pytest.raises(ValueError, match="offset"):
        att.causal_mask(2, 4, offset=-1)
    with pytest.raises(ValueError, match="T_q"):
        att.causal_mask(0)
    with pytest.raises(ValueError, match="length"):
        att.padding_mask([3, 5], 4)
    with pytest.raises(ValueError, match="lengths"):
        att.padding_mask(torch.tensor([1.5]), 4)
    with pytest.raises(ValueError, match=r"masks\[1\]"):
        att.combine_masks(att.causal_mask(3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="broadcast"):
        att.combine_masks(att.causal_mask(3), att.causal_mask(4))
    with pytest.raises(ValueError, match="n_rep"):
        att.repeat_kv(k, 0)


def test_bad_layer_and_cache_input_raises_value_error():
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_head=4"):
        att.MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="n_head=4 must be divisible by n_kv_head=3"):
        att.MultiHeadAttention(16, 4, 3)
    with pytest.raises(ValueError, match="implementation"):
        att.MultiHeadAttention(16, 4, implementation="sdpa")
    layer = att.MultiHeadAttention(16, 4, 2).to(F64)
    x = rand(1, 3, 16)
    with pytest.raises(ValueError, match="d_model=16"):
        layer(rand(1, 3, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        layer(x, mask=torch.ones(3, 4).bool())
    with pytest.raises(ValueError, match="does not broadcast"):
        layer(x, mask=torch.zeros(2, 3, dtype=F64))
    cache = att.KVCache(max_len=4)
    layer.implementation = "fused"
    with pytest.raises(ValueError, match="return_weights"):
        layer(x, kv_cache=cache, return_weights=True)
    assert cache.length == 0  # rejected before the cache was touched
    with torch.no_grad():
        layer(x, kv_cache=cache)
        with pytest.raises(ValueError, match=r"overflow.*max_len=4"):
            layer(x[:, :2], kv_cache=cache)
    assert cache.length == 3
    with pytest.raises(ValueError, match="do not match"):
        cache.update(rand(1, 4, 1, 4), rand(1, 4, 1, 4))
    with pytest.raises(ValueError, match="max_len"):
        att.KVCache(max_len=0)


def test_kv_cache_reorder_moves_rows_with_their_beams():
    cache = att.KVCache(max_len=5)
    k = torch.arange(3 * 2 * 2 * 4, dtype=F64).view(3, 2, 2, 4)
    cache.update(k, -k)
    cache.reorder(torch.tensor([2, 0, 0, 1]))  # rows may repeat; B grows from 3 to 4
    k2, v2 = cache.update(k[:1].expand(4, -1, -1, -1), -k[:1].expand(4, -1, -1, -1))
    assert torch.equal(k2[:, :, :2], k[[2, 0, 0, 1]]) and torch.equal(
        v2[:, :, :2], -k[[2, 0, 0, 1]]
    )
    assert cache.length == 4
    with pytest.raises(ValueError, match="beam_idx"):
        cache.reorder(torch.tensor([4]))
    with pytest.raises(ValueError, match="beam_idx"):
        cache.reorder(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="reorder"):
        att.KVCache(max_len=2).reorder(torch.tensor([0]))
