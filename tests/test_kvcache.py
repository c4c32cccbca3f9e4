"""Tests of llmbook.kvcache: the block allocator, the paged KV cache and fragmentation.

The paged cache must hold exactly what the contiguous :class:`llmbook.attention.KVCache`
holds (the gather is a copy, so equality is exact), and attention through the block
table must equal attention over the contiguous cache: exactly for the stored tensors,
and to 1e-12 in float64 for a real attention layer decoding token by token (the two
paths differ only in the order of a few float64 additions: round-off ~1e-16 per
operation).
"""

import numpy as np
import pytest
import torch

from llmbook.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from llmbook.kvcache import BlockAllocator, PagedKVCache, blocks_needed, kv_slot_usage


# ------------------------------------------------------------------------- allocator
def test_allocator_hands_out_lowest_free_block_and_takes_it_back():
    a = BlockAllocator(4)
    assert [a.allocate() for _ in range(3)] == [0, 1, 2]
    assert a.n_free == 1
    a.free(1)
    assert a.n_free == 2
    assert a.allocate() == 1  # the lowest free id again
    assert a.allocate() == 3
    with pytest.raises(MemoryError):
        a.allocate()
    with pytest.raises(ValueError, match="block"):
        a.free(7)
    a.free(0)
    with pytest.raises(ValueError, match="block"):
        a.free(0)  # double free


def test_blocks_needed_is_the_ceiling():
    assert [blocks_needed(n, 4) for n in range(0, 10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]


# ----------------------------------------------------------------------- paged cache
def _kv(gen, H, T, d):
    return (
        torch.randn(H, T, d, generator=gen, dtype=torch.float64),
        torch.randn(H, T, d, generator=gen, dtype=torch.float64),
    )


def test_interleaved_sequences_equal_their_contiguous_caches():
    gen = torch.Generator().manual_seed(0)
    H, d, bs = 2, 8, 4
    paged = PagedKVCache(32, bs, H, d, dtype=torch.float64)
    contiguous = {s: KVCache(64) for s in (10, 11, 12)}
    # three sequences growing in interleaved chunks of different sizes (prefill, decode)
    for seq, T_new in [(10, 7), (11, 1), (12, 9), (10, 1), (11, 5), (10, 4), (12, 1), (11, 1)]:
        k, v = _kv(gen, H, T_new, d)
        paged.append(seq, k, v)
        contiguous[seq].update(k[None], v[None])
    for seq, cache in contiguous.items():
        k, v = paged.gather(seq)
        ck, cv = cache.update(k[:, :0][None], v[:, :0][None])  # read without appending
        assert paged.length(seq) == cache.length
        assert torch.equal(k, ck[0]) and torch.equal(v, cv[0])
        assert len(paged.block_table(seq)) == blocks_needed(cache.length, bs)
    # the blocks of different sequences are disjoint; interleaving scattered them
    tables = [set(paged.block_table(s)) for s in contiguous]
    assert sum(map(len, tables)) == len(set().union(*tables))
    # blocks are taken in order of demand: 10 gets 0-1, 11 gets 2, 12 gets 3-5, ...
    assert paged.block_table(10) == [0, 1, 7]
    assert paged.block_table(11) == [2, 6]
    assert paged.block_table(12) == [3, 4, 5]


def test_attend_equals_attention_over_the_contiguous_cache():
    gen = torch.Generator().manual_seed(1)
    n_head, H, d = 4, 2, 8  # grouped-query: two query heads per key/value head
    paged = PagedKVCache(16, 3, H, d, dtype=torch.float64)
    k, v = _kv(gen, H, 11, d)
    paged.append(5, k, v)
    q = torch.randn(n_head, 4, d, generator=gen, dtype=torch.float64)  # the last 4 positions
    want = scaled_dot_product_attention(q[None], k[None], v[None], causal_mask(4, 11))[0]
    assert torch.equal(paged.attend(5, q), want)


def test_a_real_layer_decodes_the_same_through_the_block_table():
    torch.manual_seed(0)
    layer = MultiHeadAttention(d_model=16, n_head=4, n_kv_head=2).double().eval()
    X = torch.randn(2, 13, 16, dtype=torch.float64)
    with torch.no_grad():
        full = layer(X)  # causal, all positions at once
        paged = PagedKVCache(12, 4, 2, 4, dtype=torch.float64)
        outs = []
        for t in range(13):
            for b in range(2):
                x = X[b, t : t + 1]
                q = layer.q_proj(x).view(1, 4, 4).transpose(0, 1)
                k = layer.k_proj(x).view(1, 2, 4).transpose(0, 1)
                v = layer.v_proj(x).view(1, 2, 4).transpose(0, 1)
                paged.append(b, k, v)
                o = paged.attend(b, q).transpose(0, 1).reshape(1, 16)
                outs.append(layer.out_proj(o))
    got = torch.stack(outs).view(13, 2, 16).transpose(0, 1)
    assert (got - full).abs().max() < 1e-12


def test_free_returns_blocks_and_a_failed_append_changes_nothing():
    paged = PagedKVCache(3, 2, 1, 2)
    paged.append(0, torch.ones(1, 5, 2), torch.ones(1, 5, 2))  # 3 blocks
    assert paged.allocator.n_free == 0
    with pytest.raises(MemoryError):
        paged.append(1, torch.ones(1, 1, 2), torch.ones(1, 1, 2))
    assert paged.sequences == [0]
    paged.append(0, torch.ones(1, 1, 2), torch.ones(1, 1, 2))  # fits the last block's slot
    assert paged.length(0) == 6
    paged.free(0)
    assert paged.allocator.n_free == 3 and paged.sequences == []
    with pytest.raises(ValueError, match="seq_id"):
        paged.gather(0)


def test_bad_shapes_are_refused():
    paged = PagedKVCache(4, 2, 2, 3)
    with pytest.raises(ValueError, match="k must"):
        paged.append(0, torch.ones(2, 1, 4), torch.ones(2, 1, 4))
    with pytest.raises(ValueError, match="disagree"):
        paged.append(0, torch.ones(2, 1, 3), torch.ones(2, 2, 3))
    paged.append(0, torch.ones(2, 2, 3), torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match="q must"):
        paged.attend(0, torch.ones(3, 1, 3))  # 3 heads: not a multiple of 2
    with pytest.raises(ValueError, match="q must"):
        paged.attend(0, torch.ones(2, 3, 3))  # more queries than positions


# --------------------------------------------------------------------- fragmentation
def test_slot_usage_counts_by_hand():
    u = kv_slot_usage([1, 16, 17, 40], block_size=16, max_len=64)
    assert u["tokens"] == 74
    assert u["paged_slots"] == 16 + 16 + 32 + 48
    assert u["contiguous_slots"] == 4 * 64
    assert u["paged_waste"] == pytest.approx(1 - 74 / 112)
    assert u["contiguous_waste"] == pytest.approx(1 - 74 / 256)
    # block size 1 wastes nothing; a block of max_len is the contiguous reservation
    assert kv_slot_usage([3, 5], 1, 8)["paged_waste"] == 0
    same = kv_slot_usage(np.array([3, 5]), 8, 8)
    assert same["paged_slots"] == same["contiguous_slots"]


def test_paged_waste_is_below_one_block_per_request():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2048, size=500)
    for b in (1, 8, 16, 64):
        u = kv_slot_usage(lengths, b, 2048)
        assert u["paged_slots"] - u["tokens"] <= (b - 1) * len(lengths)
        assert u["paged_waste"] <= u["contiguous_waste"]


def test_slot_usage_refuses_lengths_beyond_max_len():
    with pytest.raises(ValueError, match="lengths"):
        kv_slot_usage([3, 9], 4, 8)
    with pytest.raises(ValueError, match="lengths"):
        kv_slot_usage([], 4, 8)
