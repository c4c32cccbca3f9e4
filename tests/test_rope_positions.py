"""Tests of explicit token positions (and an attention mask) through apply_rope, the
attention layer and the GPT: equal to the implicit positions where they coincide, packed
documents equal to each document alone, shift invariance of RoPE and ALiBi, bad input.

Tolerances. "Equal to the implicit positions" runs the same operations on the same
values, so it is checked exactly (difference 0), except through torch's fused kernel with a
per-row bias (1e-12, see the test). Packing changes the shapes of the matrix
products and softmaxes (12 keys, some masked, instead of 5 or 7), so sums may be reordered:
in float64 we allow 1e-10 on logits of order 1 (measured ~1e-15). Shifting every position
by a constant changes RoPE's angles by round-off only: 1e-9 in float64 (measured ~1e-13).
"""

import pytest
import torch

from llmbook import positional as pos
from llmbook.attention import KVCache
from llmbook.gpt import GPT, POSITIONALS, CausalSelfAttention, GPTConfig

V, CTX = 61, 32


def tiny(positional: str, **kw) -> GPTConfig:
    base = dict(vocab_size=V, block_size=CTX, n_layer=2, n_head=4, d_model=32)
    return GPTConfig(**{**base, "positional": positional, **kw})


def model(positional: str, dtype=torch.float64, **kw) -> GPT:
    torch.manual_seed(0)
    m = GPT(tiny(positional, **kw)).to(dtype).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so positions matter visibly
        for p in m.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    return m


def ids(B=2, T=12, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- apply_rope
def test_apply_rope_batched_positions():
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    p = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [0, 1, 2, 0, 1]])
    out = pos.apply_rope(x, p)
    for b in range(3):
        assert torch.equal(out[b], pos.apply_rope(x[b], p[b]))
    x4 = torch.randn(3, 2, 5, 8, dtype=torch.float64)  # (B, n_head, T, d_head)
    out4 = pos.apply_rope(x4, p[:, None, :])
    for b in range(3):
        assert torch.equal(out4[b], pos.apply_rope(x4[b], p[b]))


@pytest.mark.parametrize(
    "bad",
    [
        torch.arange(4),  # T = 5 expected
        torch.zeros(4, 5, dtype=torch.long),  # batch 4 does not broadcast to 3
        torch.zeros(2, 3, 5, dtype=torch.long),  # would enlarge x
        torch.ones(5, dtype=torch.bool),
        torch.ones(5, dtype=torch.complex64),
        torch.tensor(3),
        [0, 1, 2, 3, 4],
    ],
)
def test_apply_rope_bad_positions(bad):
    with pytest.raises(ValueError, match="positions"):
        pos.apply_rope(torch.randn(3, 5, 8), bad)


def test_apply_rope_refuses_bt_positions_for_four_dim_x():
    # (B, T) against (B, n_head, T, d) with B != n_head would broadcast B against the heads
    with pytest.raises(ValueError, match=r"positions\[:, None, :\]"):
        pos.apply_rope(torch.randn(3, 2, 5, 8), torch.zeros(3, 5, dtype=torch.long))


# ------------------------------------------------------------------------------ GPT
@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("implementation", ["explicit", "fused"])
def test_explicit_positions_equal_implicit(positional, implementation):
    m = model(positional, attn_implementation=implementation)
    x = ids()
    ref, _ = m(x)
    T = x.shape[1]
    # torch's fused kernel, given a per-row ALiBi bias (B, 1, T, T) instead of (n_head, T, T),
    # may sum in another order: measured 4e-15 on logits of order 1
    tol = 0.0 if implementation == "explicit" else 1e-12
    for p in (torch.arange(T), torch.arange(T).expand(2, T), torch.arange(T, dtype=torch.int32)):
        got, _ = m(x, positions=p)
        torch.testing.assert_close(got, ref, atol=tol, rtol=0)
    full = torch.ones(T, T, dtype=torch.bool)  # a mask that allows everything: no change
    assert torch.equal(m(x, mask=full)[0], ref)


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("implementation", ["explicit", "fused"])
def test_packed_documents_equal_each_alone(positional, implementation):
    m = model(positional, attn_implementation=implementation)
    a, b = ids(1, 5, seed=2), ids(1, 7, seed=3)
    packed = torch.cat((a, b), dim=1)  # one row, two documents
    positions = torch.cat((torch.arange(5), torch.arange(7)))  # restart at 0
    doc = torch.cat((torch.zeros(5), torch.ones(7)))
    mask = doc[:, None] == doc[None, :]  # block diagonal; the causal mask is added inside
    got, _ = m(packed, positions=positions, mask=mask)
    want = torch.cat((m(a)[0], m(b)[0]), dim=1)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert (got - m(packed)[0]).abs().max() > 1e-3  # without them the second doc differs


@pytest.mark.parametrize("positional", ["rope", "alibi"])
def test_relative_schemes_ignore_a_common_shift(positional):
    # RoPE and ALiBi see only position differences: per-row offsets change nothing,
    # including positions beyond block_size (no table limits them).
    m = model(positional)
    x = ids(B=3)
    T = x.shape[1]
    shifted = torch.arange(T) + torch.tensor([[0], [5], [CTX + 100]])
    torch.testing.assert_close(m(x, positions=shifted)[0], m(x)[0], atol=1e-9, rtol=0)


def test_absolute_schemes_use_the_rows_they_are_given():
    m = model("learned")
    x = ids(B=1, T=4)
    got, _ = m(x, positions=torch.tensor([3, 9, 9, 0]))
    emb = m.wte(x) + m.wpe.weight[torch.tensor([3, 9, 9, 0])]
    h = emb
    for block in m.blocks:
        h = block(h)
    torch.testing.assert_close(got, m.lm_head(m.ln_f(h)), atol=0, rtol=0)


@pytest.mark.parametrize("positional", ["rope", "alibi", "learned"])
def test_attention_with_cache_and_positions(positional):
    # The layer, prefix then suffix through a KV cache with explicit positions offset..,
    # equals the whole sequence at once (RoPE: positions baked into the cached keys).
    torch.manual_seed(0)
    attn = CausalSelfAttention(tiny(positional)).double().eval()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    whole = attn(x)
    cache = KVCache(CTX)
    first = attn(x[:, :4], cache, positions=torch.arange(4))
    if positional == "alibi":
        with pytest.raises(ValueError, match=r"positions.*alibi.*empty kv_cache"):
            attn(x[:, 4:], cache, positions=torch.arange(4, 9))
        return
    second = attn(x[:, 4:], cache, positions=torch.arange(4, 9).expand(2, 5))
    torch.testing.assert_close(torch.cat((first, second), 1), whole, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("positional", "bad", "match"),
    [
        ("rope", torch.arange(12) - 1, "positions must be >= 0"),
        ("learned", torch.arange(12) + CTX - 11, "positions must be in \\[0, block_size=32\\)"),
        ("sinusoidal", torch.full((12,), CTX), "block_size=32"),
        ("rope", torch.arange(13), "positions must have shape"),
        ("rope", torch.zeros(3, 12, dtype=torch.long), "positions must have shape"),
        ("rope", torch.zeros(2, 1, 12, dtype=torch.long), "positions must have shape"),
        ("rope", torch.arange(12.0), "positions must be an integer tensor"),
        ("alibi", torch.ones(12, dtype=torch.bool), "positions must be an integer tensor"),
        ("learned", list(range(12)), "positions must be an integer tensor"),
    ],
)
def test_bad_positions(positional, bad, match):
    m = model(positional)
    with pytest.raises(ValueError, match=match):
        m(ids(), positions=bad)
    attn = m.blocks[0].attn
    if not (isinstance(bad, torch.Tensor) and bad.max() >= CTX):  # the layer has no table
        with pytest.raises(ValueError, match="positions"):
            attn(torch.zeros(2, 12, 32, dtype=torch.float64), positions=bad)


def test_bad_mask():
    m = model("rope")
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        m(ids(), mask=torch.ones(12, 12))
    with pytest.raises(ValueError, match=r"mask of shape \(11, 12\)"):
        m(ids(), mask=torch.ones(11, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        m.blocks[0].attn(torch.zeros(2, 12, 32, dtype=torch.float64), mask="causal")
