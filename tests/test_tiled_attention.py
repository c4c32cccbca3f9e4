"""Tiled attention with the online softmax (FlashAttention's forward pass, Chapter 14).

Equal to exact attention (:func:`llmbook.attention.scaled_dot_product_attention`) in
float64 to 1e-12: the two compute the same sums in a different order, so they differ by
a few float64 roundings (~1e-16 relative) per term, far below the tolerance; a wrong
rescaling or mask would be off by O(1). Against torch's fused kernel in float32 at 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmbook.attention import causal_mask, scaled_dot_product_attention, tiled_attention


def qkv(B=2, H=4, H_kv=4, T_q=37, T_k=37, d=8, dtype=torch.float64, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    q = spread * torch.randn(B, H, T_q, d, generator=g, dtype=dtype)
    k = spread * torch.randn(B, H_kv, T_k, d, generator=g, dtype=dtype)
    v = torch.randn(B, H_kv, T_k, d, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("blocks", [(1, 1), (4, 7), (16, 16), (37, 37), (64, 5), (5, 64)])
def test_equals_exact_attention_in_float64(causal, blocks):
    q, k, v = qkv()
    mask = causal_mask(37) if causal else None
    exact = scaled_dot_product_attention(q, k, v, mask)
    tiled = tiled_attention(q, k, v, causal=causal, block_q=blocks[0], block_k=blocks[1])
    torch.testing.assert_close(tiled, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T_q,T_k", [(1, 50), (9, 50), (50, 50)])
def test_causal_queries_are_the_last_positions_as_with_a_cache(T_q, T_k):
    q, k, v = qkv(T_q=T_q, T_k=T_k)
    exact = scaled_dot_product_attention(q, k, v, causal_mask(T_q, T_k))
    for bq, bk in ((4, 8), (3, 16)):
        got = tiled_attention(q, k, v, causal=True, block_q=bq, block_k=bk)
        torch.testing.assert_close(got, exact, rtol=0, atol=1e-12)


def test_grouped_query_heads_and_a_custom_scale():
    q, k, v = qkv(H=6, H_kv=2, T_q=20, T_k=33)
    exact = scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(
        tiled_attention(q, k, v, block_q=8, block_k=8, scale=0.3), exact, rtol=0, atol=1e-12
    )


def test_large_scores_do_not_overflow():
    # scores of ~1e4: exp() of them overflows; the running maximum keeps every exponent <= 0
    q, k, v = qkv(spread=60.0)
    exact = scaled_dot_product_attention(q, k, v, causal_mask(37))
    tiled = tiled_attention(q, k, v, causal=True, block_q=8, block_k=8)
    assert torch.isfinite(tiled).all()
    torch.testing.assert_close(tiled, exact, rtol=0, atol=1e-12)


def test_matches_torch_fused_kernel_in_float32():
    q, k, v = qkv(dtype=torch.float32, T_q=70, T_k=70, d=16)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(
        tiled_attention(q, k, v, causal=True, block_q=16, block_k=32), ref, rtol=1e-5, atol=1e-5
    )


def test_gradients_flow_and_match_exact_attention():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, H_kv=2, T_q=9, T_k=9, d=4))
    tiled = tiled_attention(q, k, v, causal=True, block_q=4, block_k=3).sum()
    g_tiled = torch.autograd.grad(tiled, (q, k, v))
    exact = scaled_dot_product_attention(q, k, v, causal_mask(9)).sum()
    g_exact = torch.autograd.grad(exact, (q, k, v))
    for a, b in zip(g_tiled, g_exact, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_one_tile_run_is_plain_softmax_attention():
    q, k, v = qkv(B=1, H=1, H_kv=1, T_q=5, T_k=5, d=3)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(3), dim=-1)
    torch.testing.assert_close(tiled_attention(q, k, v, block_q=5, block_k=5), weights @ v)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"block_q": 0}, "block_q"),
        ({"block_k": -1}, "block_k"),
        ({"block_k": 2.5}, "block_k"),
        ({"scale": 0.0}, "scale"),
        ({"causal": "yes"}, "causal"),
    ],
)
def test_bad_input(kwargs, match):
    q, k, v = qkv(T_q=4, T_k=4)
    with pytest.raises(ValueError, match=match):
        tiled_attention(q, k, v, **kwargs)


def test_bad_shapes():
    q, k, v = qkv(T_q=6, T_k=4)
    with pytest.raises(ValueError, match="T_k >= T_q"):
        tiled_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="4-d"):
        tiled_attention(q[0], k, v)
