"""Tests of llmbook.information: known values, identities, torch cross-checks, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from llmbook import information as info


def distributions(min_size=2, max_size=12):
    """Random probability vectors, some with exact zeros."""
    weights = arrays(
        np.float64,
        st.integers(min_size, max_size),
        elements=st.one_of(st.just(0.0), st.floats(1e-3, 10.0)),
    ).filter(lambda w: w.sum() > 0)
    return weights.map(lambda w: w / w.sum())


def test_known_values():
    assert info.entropy([0.5, 0.5], base=2) == pytest.approx(1.0)
    assert info.entropy([1.0, 0.0, 0.0]) == 0.0
    assert info.entropy(np.full(8, 1 / 8), base=2) == pytest.approx(3.0)
    # -ln 0.9 and -ln 0.01, the source's "guessing game" numbers (S1 §1.2)
    assert info.negative_log_likelihood([0.9]) == pytest.approx(0.1053605, abs=1e-7)
    assert info.negative_log_likelihood([0.01]) == pytest.approx(4.6051702, abs=1e-7)
    assert info.perplexity(3.0, base=2) == pytest.approx(8.0)
    assert info.kl_divergence([0.5, 0.5], [0.9, 0.1]) == pytest.approx(
        0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    )


@given(distributions())
def test_uniform_perplexity_is_vocabulary_size(p):
    v = len(p)
    u = np.full(v, 1 / v)
    assert info.perplexity(info.entropy(u)) == pytest.approx(v)
    # any distribution on v outcomes has perplexity between 1 and v
    ppl = info.perplexity(info.entropy(p))
    assert 1 - 1e-9 <= ppl <= v + 1e-9


@given(distributions(), st.data())
def test_cross_entropy_decomposes(p, data):
    q = data.draw(distributions(len(p), len(p)))
    h_pq = info.cross_entropy(p, q)
    kl = info.kl_divergence(p, q)
    assert kl >= 0
    if np.isfinite(h_pq):
        assert h_pq == pytest.approx(info.entropy(p) + kl, abs=1e-9)
    else:
        assert np.isinf(kl)
        assert ((p > 0) & (q == 0)).any()


@given(distributions())
def test_bases_agree(p):
    nats = info.entropy(p)
    bits = info.entropy(p, base=2)
    assert bits == pytest.approx(info.nats_to_bits(nats))
    assert info.perplexity(nats) == pytest.approx(info.perplexity(bits, base=2))
    assert info.bits_to_nats(info.nats_to_bits(nats)) == pytest.approx(nats)


def test_kl_zero_iff_equal_and_asymmetric():
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7])
    assert info.kl_divergence(p, p) == 0.0
    assert info.kl_divergence(p, q) > 0
    r = np.array([0.6, 0.3, 0.1])
    assert info.kl_divergence(p, r) != pytest.approx(info.kl_divergence(r, p))
    assert np.isinf(info.kl_divergence([0.5, 0.5], [1.0, 0.0]))


def test_batched_axis():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(info.entropy(p, base=2), [1.0, 0.0])
    np.testing.assert_allclose(info.entropy(p.T, base=2, axis=0), [1.0, 0.0])


def test_mutual_information():
    independent = np.outer([0.3, 0.7], [0.2, 0.5, 0.3])
    assert info.mutual_information(independent) == pytest.approx(0.0, abs=1e-12)
    copy = np.diag([0.25, 0.25, 0.25, 0.25])  # Y = X, uniform on 4: I = H(X) = 2 bits
    assert info.mutual_information(copy, base=2) == pytest.approx(2.0)
    joint = np.array([[0.1, 0.2], [0.3, 0.4]])
    py, px = joint.sum(0), joint.sum(1)
    h_y_given_x = sum(px[i] * info.entropy(joint[i] / px[i]) for i in range(2))
    assert info.mutual_information(joint) == pytest.approx(info.entropy(py) - h_y_given_x)


def test_torch_in_torch_out_and_matches_torch():
    torch.manual_seed(0)
    logits_p, logits_q = (
        torch.randn(4, 10, dtype=torch.float64),
        torch.randn(4, 10, dtype=torch.float64),
    )
    p, q = logits_p.softmax(-1), logits_q.softmax(-1)
    h = info.entropy(p)
    assert isinstance(h, torch.Tensor) and h.shape == (4,)
    torch.testing.assert_close(h, torch.distributions.Categorical(probs=p).entropy())
    # torch's cross_entropy with probability targets takes logits of q
    torch.testing.assert_close(
        info.cross_entropy(p, q), torch.nn.functional.cross_entropy(logits_q, p, reduction="none")
    )
    torch.testing.assert_close(
        info.kl_divergence(p, q),
        torch.nn.functional.kl_div(q.log(), p, reduction="none").sum(-1),
    )
    nll = info.negative_log_likelihood(p[:, 3])
    torch.testing.assert_close(nll, -p[:, 3].log().mean())


def test_numpy_in_numpy_out():
    assert isinstance(info.entropy([0.2, 0.8]), np.floating)
    assert isinstance(info.perplexity(1.0), float)


def test_per_unit_conversions():
    # 1000 tokens at 2 nats/token over 4000 characters = 0.5 nats/char
    assert info.per_unit(2.0, 1000, 4000) == pytest.approx(0.5)
    assert info.bits_per_character(2.0, 1000, 4000) == pytest.approx(0.5 / math.log(2))
    assert info.bits_per_byte(math.log(2), 10, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: info.entropy([0.5, 0.6]), "sum to 1"),
        (lambda: info.entropy([-0.5, 1.5]), "negative"),
        (lambda: info.entropy([np.nan, 1.0]), "finite"),
        (lambda: info.entropy(0.5), "scalar"),
        (lambda: info.entropy(np.zeros((2, 0))), "empty"),
        (lambda: info.entropy([0.5, 0.5], base=1), "base"),
        (lambda: info.entropy([0.5, 0.5], base=-2), "base"),
        (lambda: info.cross_entropy([0.5, 0.5], [1.0]), "same shape"),
        (lambda: info.mutual_information([0.5, 0.5]), "2-D"),
        (lambda: info.negative_log_likelihood([]), "empty"),
        (lambda: info.negative_log_likelihood([1.5]), r"\[0, 1\]"),
        (lambda: info.perplexity(-1.0), "loss must be >= 0"),
        (lambda: info.perplexity(float("nan")), "loss must be >= 0"),
        (lambda: info.per_unit(1.0, 0, 10), "n_tokens"),
        (lambda: info.per_unit(1.0, 10, 2.5), "n_units"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=50)
@given(distributions())
def test_zero_probability_gives_inf_not_nan(p):
    q = np.zeros_like(p)
    q[np.argmin(p)] = 1.0
    h = info.cross_entropy(p, q)
    assert not np.isnan(h)
    if (p[q == 0] > 0).any():
        assert np.isinf(h)
