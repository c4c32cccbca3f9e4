"""Tests of llmbook.functional against torch's own implementations, with gradcheck."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from llmbook import functional as F

torch.manual_seed(0)
X = torch.randn(4, 7, dtype=torch.float64) * 3


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (F.relu, torch.relu),
        (F.gelu, lambda x: torch.nn.functional.gelu(x)),
        (lambda x: F.gelu(x, "tanh"), lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
        (F.silu, torch.nn.functional.silu),
        (F.softmax, lambda x: torch.softmax(x, -1)),
        (F.log_softmax, lambda x: torch.log_softmax(x, -1)),
        (F.logsumexp, lambda x: torch.logsumexp(x, -1)),
    ],
)
def test_matches_torch(ours, ref):
    torch.testing.assert_close(ours(X), ref(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "fn",
    [F.relu, F.gelu, lambda x: F.gelu(x, "tanh"), F.silu, F.softmax, F.log_softmax, F.logsumexp],
)
def test_gradcheck(fn):
    x = (torch.randn(3, 5, dtype=torch.float64) + 0.3).requires_grad_()  # away from ReLU's kink
    assert torch.autograd.gradcheck(fn, (x,))


def test_swiglu_matches_llama_style_ffn_and_gradcheck():
    gate = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.silu(gate) * up
    torch.testing.assert_close(F.swiglu(gate, up), expected)
    assert torch.autograd.gradcheck(F.swiglu, (gate, up))


def test_gelu_grad_is_the_derivative():
    x = torch.linspace(-6, 6, 241, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(F.gelu(x).sum(), x)
    torch.testing.assert_close(F.gelu_grad(x.detach()), auto, rtol=1e-12, atol=1e-12)


def test_gelu_tanh_approximation_error_is_small():
    x = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    err = (F.gelu(x) - F.gelu(x, "tanh")).abs().max().item()
    assert 1e-4 < err < 1e-3  # the approximation is good to about 3 decimals, not better


@settings(max_examples=60, deadline=None)
@given(
    arrays(float, st.integers(1, 12), elements=st.floats(-1e4, 1e4)),
    st.floats(-1e4, 1e4),
)
def test_softmax_properties(values, shift):
    x = torch.tensor(values, dtype=torch.float64)
    p = F.softmax(x)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert math.isclose(p.sum().item(), 1.0, rel_tol=1e-12)
    torch.testing.assert_close(F.softmax(x + shift), p, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(F.logsumexp(x), torch.logsumexp(x, 0))


def test_no_overflow_where_naive_fails():
    x = torch.tensor([1000.0, 1001.0])
    naive = torch.exp(x) / torch.exp(x).sum()
    assert torch.isnan(naive).all()
    expected = torch.tensor([1 / (1 + math.e), math.e / (1 + math.e)])
    torch.testing.assert_close(F.softmax(x), expected)
    assert F.logsumexp(x).item() == pytest.approx(1001 + math.log1p(math.exp(-1)))


def test_masked_entries():
    x = torch.tensor([[0.0, -math.inf, 1.0], [-math.inf, -math.inf, -math.inf]])
    assert F.logsumexp(x)[1].item() == -math.inf
    p = F.softmax(x[:1])
    assert p[0, 1].item() == 0.0 and math.isclose(p.sum().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: F.softmax([1.0, 2.0]), "torch.Tensor"),
        (lambda: F.softmax(torch.tensor([1, 2])), "floating-point"),
        (lambda: F.softmax(torch.tensor([[-math.inf, -math.inf]])), "-inf"),
        (lambda: F.softmax(torch.tensor([1.0, math.nan])), "NaN"),
        (lambda: F.softmax(torch.tensor([1.0, 2.0]), dim=1), "dim"),
        (lambda: F.logsumexp(torch.tensor(1.0)), "dim"),
        (lambda: F.gelu(torch.ones(2), approximate="erf"), "approximate"),
        (lambda: F.swiglu(torch.ones(2), torch.ones(3)), "same shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
