"""Tests of llmbook.positional: sinusoidal, learned, RoPE (with scaling) and ALiBi.

Tolerances: all identities are checked in float64. The angles involved are at most a few
thousand radians, where sin and cos are accurate to about 1e-13, and the sums have at
most 128 terms, so 1e-11 is a tolerance with two orders of margin that still fails on
any real error (a wrong sign, a transposed block or an off-by-one position moves values
by O(1e-3) or more).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook import positional as pos

ATOL = 1e-11


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------- sinusoidal
def test_sinusoidal_known_values_and_loop_reference():
    pe = pos.sinusoidal_encoding(50, 8)
    assert pe.shape == (50, 8) and pe.dtype == torch.float64
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-15)
    assert pe[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 8)), abs=1e-15)
    # Vaswani et al.'s formula, written as two loops
    ref = torch.zeros(50, 8, dtype=torch.float64)
    for p in range(50):
        for i in range(4):
            ref[p, 2 * i] = math.sin(p / 10000 ** (2 * i / 8))
            ref[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / 8))
    torch.testing.assert_close(pe, ref, atol=1e-14, rtol=0)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(-300, 300), half=st.integers(1, 32), base=st.sampled_from([100.0, 1e4]))
def test_sinusoidal_shift_is_one_linear_map_for_every_position(k, half, base):
    d, n = 2 * half, 700
    pe = pos.sinusoidal_encoding(n, d, base=base)
    m_k = pos.sinusoidal_shift_matrix(k, d, base=base)
    lo, hi = max(0, -k), min(n, n - k)  # positions p with p and p + k both in the table
    shifted = pe[lo:hi] @ m_k.T  # row p: M_k PE(p)
    torch.testing.assert_close(shifted, pe[lo + k : hi + k], atol=ATOL, rtol=0)
    # a rotation: orthogonal, and composing shifts adds offsets
    torch.testing.assert_close(m_k @ m_k.T, torch.eye(d, dtype=torch.float64), atol=ATOL, rtol=0)
    m_3 = pos.sinusoidal_shift_matrix(3, d, base=base)
    torch.testing.assert_close(
        m_k @ m_3, pos.sinusoidal_shift_matrix(k + 3, d, base=base), atol=ATOL, rtol=0
    )


def test_sinusoidal_shift_matrix_is_not_the_identity_or_its_transpose():
    m = pos.sinusoidal_shift_matrix(5, 4)
    pe = pos.sinusoidal_encoding(20, 4)
    # the transpose (a rotation the other way) maps PE(p) to PE(p - 5), not PE(p + 5)
    assert (pe[:15] @ m - pe[5:]).abs().max() > 0.1
    torch.testing.assert_close(pe[5:] @ m, pe[:15], atol=ATOL, rtol=0)


def test_sinusoidal_dot_product_depends_on_offset_only():
    pe = pos.sinusoidal_encoding(200, 16)
    gram = pe @ pe.T
    for k in (0, 1, 7, 50):
        diag = torch.diagonal(gram, offset=k)
        expected = (k * pos.rope_frequencies(16)).cos().sum()
        torch.testing.assert_close(diag, expected.expand_as(diag), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------- learned
def test_learned_embedding_adds_the_table_rows():
    torch.manual_seed(0)
    layer = pos.LearnedPositionalEmbedding(10, 6)
    x = rand(2, 4, 6).float()
    torch.testing.assert_close(layer(x), x + layer.weight[:4], atol=0, rtol=0)
    torch.testing.assert_close(layer(x, offset=6), x + layer.weight[6:10], atol=0, rtol=0)
    assert layer.weight.std().item() == pytest.approx(0.02, rel=0.5)


def test_learned_embedding_gradients_reach_only_the_used_rows():
    layer = pos.LearnedPositionalEmbedding(10, 6).double()
    x = rand(3, 4, 6).requires_grad_()
    layer(x, offset=2).sum().backward()
    grad = layer.weight.grad
    assert torch.equal(grad[2:6], torch.full((4, 6), 3.0, dtype=torch.float64))  # 3 = batch
    assert grad[:2].abs().sum() == 0 and grad[6:].abs().sum() == 0
    assert torch.autograd.gradcheck(lambda t: layer(t), (rand(1, 5, 6).requires_grad_(),))


def test_learned_embedding_rejects_sequences_longer_than_the_table():
    layer = pos.LearnedPositionalEmbedding(8, 4)
    layer(torch.zeros(1, 8, 4))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=8"):
        layer(torch.zeros(1, 9, 4))
    with pytest.raises(ValueError, match="max_len=8"):
        layer(torch.zeros(1, 4, 4), offset=5)
    with pytest.raises(ValueError, match="d_model=4"):
        layer(torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="max_len"):
        pos.LearnedPositionalEmbedding(0, 4)
    with pytest.raises(ValueError, match="offset"):
        layer(torch.zeros(1, 2, 4), offset=-1)


# ---------------------------------------------------------------------------------- RoPE
def complex_rope(x, positions, theta):
    """The straightforward complex-number form: (x_2i + i x_2i+1) * exp(i m theta_i)."""
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    rot = torch.polar(torch.ones_like(theta), positions[:, None] * theta)  # (T, d/2)
    return torch.view_as_real(z * rot).flatten(-2)


def test_rope_frequencies_known_values():
    torch.testing.assert_close(
        pos.rope_frequencies(4), torch.tensor([1.0, 0.01], dtype=torch.float64)
    )
    theta = pos.rope_frequencies(128, base=500000.0)
    assert theta[0] == 1.0 and theta[-1].item() == pytest.approx(500000 ** (-126 / 128))
    assert (theta[1:] < theta[:-1]).all()


@pytest.mark.parametrize("d", [2, 8, 64])
def test_rope_matches_the_complex_number_form_and_the_matrix_form(d):
    x = rand(3, 20, d)
    positions = torch.arange(20, dtype=torch.float64) * 7.5 - 30  # fractional, negative too
    theta = pos.rope_frequencies(d, base=500.0)
    out = pos.apply_rope(x, positions, freqs=theta)
    torch.testing.assert_close(out, complex_rope(x, positions, theta), atol=ATOL, rtol=0)
    for t in (0, 5, 19):
        r = pos.rope_rotation_matrix(positions[t].item(), d, base=500.0)
        torch.testing.assert_close(out[:, t], x[:, t] @ r.T, atol=ATOL, rtol=0)
    assert (out - x).abs().max() > 0.1  # it does rotate


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    T=st.integers(1, 40),
    half=st.integers(1, 32),
    base=st.floats(2.0, 1e6),
    seed=st.integers(0, 2**16),
)
def test_rope_preserves_norms(batch, T, half, base, seed):
    x = rand(batch, T, 2 * half, seed=seed)
    out = pos.apply_rope(x, base=base)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=ATOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(half=st.integers(1, 32), seed=st.integers(0, 2**16), base=st.sampled_from([1e4, 5e5]))
def test_rope_scores_depend_only_on_the_offset(half, seed, base):
    d, T = 2 * half, 64
    q, k = rand(d, seed=seed), rand(d, seed=seed + 1)
    qs = pos.apply_rope(q.expand(T, d), base=base)  # the same query at positions 0..T-1
    ks = pos.apply_rope(k.expand(T, d), base=base)
    scores = qs @ ks.T  # scores[m, n] = <R_m q, R_n k>
    for shift in range(-T + 1, T):
        diag = torch.diagonal(scores, offset=shift)  # all (m, m + shift)
        assert (diag - diag[0]).abs().max() < ATOL
        expected = q @ pos.rope_rotation_matrix(shift, d, base=base) @ k  # q^T R_{n-m} k
        assert abs(diag[0].item() - expected.item()) < ATOL


def test_rope_rotations_compose_exactly():
    d = 16
    r = {m: pos.rope_rotation_matrix(m, d) for m in (-4, 3, 7, 10)}
    torch.testing.assert_close(r[3] @ r[7], r[10], atol=ATOL, rtol=0)  # R_m R_n = R_{m+n}
    torch.testing.assert_close(r[7].T @ r[3], r[-4], atol=ATOL, rtol=0)  # R_m^T R_n = R_{n-m}


def test_rope_half_layout_is_a_permutation_of_the_interleaved_one():
    d = 12
    x = rand(2, 9, d)
    perm = torch.tensor([*range(0, d, 2), *range(1, d, 2)])  # interleaved -> half order
    out_half = pos.apply_rope(x[..., perm], layout="half")
    torch.testing.assert_close(out_half, pos.apply_rope(x)[..., perm], atol=ATOL, rtol=0)
    assert (out_half - pos.apply_rope(x[..., perm])).abs().max() > 0.1  # layouts do differ


def test_rope_batched_positions_and_dtypes():
    x = rand(2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    out = pos.apply_rope(x, positions)
    torch.testing.assert_close(out[1], pos.apply_rope(x[1], positions[1]), atol=0, rtol=0)
    torch.testing.assert_close(out[0], pos.apply_rope(x[0]), atol=0, rtol=0)
    assert pos.apply_rope(x.float()).dtype == torch.float32


def test_rope_gradcheck():
    x = rand(2, 6, 8).requires_grad_()
    p = (torch.arange(6, dtype=torch.float64) * 0.7).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: pos.apply_rope(a, b, base=100.0), (x, p))


# --------------------------------------------------------------------- context extension
def test_position_interpolation_equals_scaled_positions():
    x, s = rand(2, 30, 16), 4.0
    theta = pos.rope_frequencies(16, scaling="linear", scale=s)
    positions = torch.arange(30, dtype=torch.float64)
    torch.testing.assert_close(
        pos.apply_rope(x, freqs=theta), pos.apply_rope(x, positions / s), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("d", [4, 64, 128])
@pytest.mark.parametrize("s", [2.0, 8.0, 32.0])
def test_ntk_scaling_keeps_the_highest_and_interpolates_the_lowest_frequency(d, s):
    theta = pos.rope_frequencies(d)
    ntk = pos.rope_frequencies(d, scaling="ntk", scale=s)
    assert ntk[0].item() == pytest.approx(theta[0].item(), rel=1e-14)
    assert ntk[-1].item() == pytest.approx(theta[-1].item() / s, rel=1e-12)
    # theta_i' = theta_i * s^(-2i/(d-2)): the ratio falls geometrically with i
    i = torch.arange(d // 2, dtype=torch.float64)
    torch.testing.assert_close(ntk / theta, s ** (-2 * i / (d - 2)), atol=0, rtol=1e-12)
    same_base = pos.rope_frequencies(d, base=10000.0 * s ** (d / (d - 2)))
    torch.testing.assert_close(ntk, same_base, atol=0, rtol=1e-12)


def test_yarn_ramp():
    d, L, s, a, b = 128, 4096, 16.0, 1.0, 32.0
    theta = pos.rope_frequencies(d)
    yarn = pos.rope_frequencies(d, scaling="yarn", scale=s, original_length=L, alpha=a, beta=b)
    r = L * theta / (2 * math.pi)  # turns in the original context
    fast, slow = r > b, r < a
    assert fast.sum() >= 10 and slow.sum() >= 10 and (~fast & ~slow).sum() >= 10
    torch.testing.assert_close(yarn[fast], theta[fast], atol=0, rtol=0)  # kept
    torch.testing.assert_close(yarn[slow], theta[slow] / s, atol=0, rtol=1e-15)  # interpolated
    mid = ~fast & ~slow
    gamma = (r[mid] - a) / (b - a)
    torch.testing.assert_close(yarn[mid], (1 - gamma) * theta[mid] / s + gamma * theta[mid])
    # the scaled frequencies lie between PI's and the original ones, and keep their order
    assert ((yarn >= theta / s * (1 - 1e-15)) & (yarn <= theta)).all()
    assert (yarn[1:] < yarn[:-1]).all()
    # one value by hand: the pair i whose wavelength is L/2 makes r = 2 turns
    one = pos.rope_frequencies(
        2, base=2.0, scaling="yarn", scale=s, original_length=int(4 * math.pi), alpha=a, beta=b
    )  # theta_0 = 1, r = floor(4 pi) / (2 pi)
    r0 = int(4 * math.pi) / (2 * math.pi)
    g0 = (r0 - a) / (b - a)
    assert one.item() == pytest.approx((1 - g0) / s + g0, rel=1e-14)


def test_scaling_by_one_changes_nothing_and_yarn_temperature():
    theta = pos.rope_frequencies(32)
    for rule in ("linear", "ntk"):
        torch.testing.assert_close(pos.rope_frequencies(32, scaling=rule, scale=1.0), theta)
    yarn1 = pos.rope_frequencies(32, scaling="yarn", scale=1.0, original_length=512)
    torch.testing.assert_close(yarn1, theta, atol=0, rtol=1e-15)
    assert pos.yarn_attention_factor(1.0) == 1.0
    assert pos.yarn_attention_factor(16.0) == pytest.approx(0.1 * math.log(16) + 1)
    assert pos.yarn_attention_factor(16.0) == pytest.approx(1.27726, abs=1e-5)


# --------------------------------------------------------------------------------- ALiBi
def reference_alibi_slopes(n):
    """The recursive rule of the ALiBi paper's reference code, written out again."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    p = 2 ** math.floor(math.log2(n))
    return power_of_2(p) + reference_alibi_slopes(2 * p)[0::2][: n - p]


def test_alibi_slopes_known_values():
    assert pos.alibi_slopes(8).tolist() == [1 / 2**h for h in range(1, 9)]
    assert pos.alibi_slopes(6).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    twelve = [2.0**-h for h in range(1, 9)] + [2.0**-e for e in (0.5, 1.5, 2.5, 3.5)]
    torch.testing.assert_close(pos.alibi_slopes(12), torch.tensor(twelve, dtype=torch.float64))
    assert pos.alibi_slopes(1).tolist() == [1 / 256]
    sixteen = pos.alibi_slopes(16)
    torch.testing.assert_close(sixteen[1:] / sixteen[:-1], torch.full((15,), 2**-0.5).double())


@pytest.mark.parametrize("n", range(1, 65))
def test_alibi_slopes_match_the_papers_recursive_rule(n):
    ref = torch.tensor(reference_alibi_slopes(n), dtype=torch.float64)
    torch.testing.assert_close(pos.alibi_slopes(n), ref, atol=0, rtol=1e-13)


def test_alibi_bias():
    b = pos.alibi_bias(4, 6)
    slopes = pos.alibi_slopes(4)
    assert b.shape == (4, 6, 6)
    assert b[2, 5, 1].item() == -slopes[2].item() * 4
    assert torch.isneginf(b[:, 1, 2]).all() and (torch.diagonal(b, dim1=1, dim2=2) == 0).all()
    lower = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    assert torch.isfinite(b[:, lower]).all() and torch.isneginf(b[:, ~lower]).all()
    sym = pos.alibi_bias(4, 6, causal=False)
    torch.testing.assert_close(sym, sym.transpose(1, 2))
    torch.testing.assert_close(sym[:, lower], b[:, lower])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: pos.apply_rope(torch.zeros(2, 3, 5)), "d_head"),
        (lambda: pos.rope_frequencies(7), "d_head"),
        (lambda: pos.rope_frequencies(8, base=0.0), "base"),
        (lambda: pos.rope_frequencies(8, base=-10.0), "base"),
        (lambda: pos.apply_rope(torch.zeros(2, 4), base=-1.0), "base"),
        (lambda: pos.sinusoidal_encoding(4, 8, base=0), "base"),
        (lambda: pos.rope_frequencies(8, scaling="linear", scale=0.5), "scale"),
        (lambda: pos.rope_frequencies(8, scaling="ntk", scale=0.9), "scale"),
        (lambda: pos.rope_frequencies(8, scale=2.0), "scale"),
        (lambda: pos.rope_frequencies(8, scaling="dynamic", scale=2.0), "scaling"),
        (lambda: pos.rope_frequencies(8, scaling="yarn", scale=2.0), "original_length"),
        (lambda: pos.rope_frequencies(2, scaling="ntk", scale=2.0), "d_head"),
        (
            lambda: pos.rope_frequencies(
                8, scaling="yarn", scale=2.0, original_length=64, alpha=2, beta=1
            ),
            "beta",
        ),
        (lambda: pos.yarn_attention_factor(0.5), "scale"),
        (lambda: pos.apply_rope(torch.zeros(2, 4), torch.arange(3)), "positions"),
        (lambda: pos.apply_rope(torch.zeros(2, 4, dtype=torch.long)), "x"),
        (lambda: pos.apply_rope(torch.zeros(2, 4), freqs=torch.ones(3)), "freqs"),
        (lambda: pos.apply_rope(torch.zeros(2, 4), layout="rotate"), "layout"),
        (lambda: pos.alibi_slopes(0), "n_head"),
        (lambda: pos.alibi_slopes(-3), "n_head"),
        (lambda: pos.alibi_bias(4, 0), "seq_len"),
        (lambda: pos.sinusoidal_encoding(4, 7), "d_model"),
        (lambda: pos.sinusoidal_encoding(0, 8), "n_positions"),
        (lambda: pos.sinusoidal_shift_matrix(math.inf, 8), "k"),
        (lambda: pos.rope_rotation_matrix(1, 5), "d_head"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
