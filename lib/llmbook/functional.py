r"""Activations and the numerically stable softmax family (Chapter 2).

Every function takes and returns ``torch.Tensor`` and is differentiable by autograd
(tested with ``torch.autograd.gradcheck`` in float64). The softmax family subtracts the
maximum before exponentiating, so it never overflows:

.. math::
    \begin{aligned}
    \operatorname{softmax}(z)_i &= \frac{e^{z_i - m}}{\sum_j e^{z_j - m}}, \\
    \log\sum_j e^{z_j} &= m + \log\sum_j e^{z_j - m},\qquad m = \max_j z_j .
    \end{aligned}
"""

from __future__ import annotations

import math

import torch

from llmbook._validate import check_choice, check_float_tensor, is_int

GELU_APPROXIMATIONS = ("none", "tanh")


def _check_float(x: torch.Tensor, name: str = "x") -> None:
    check_float_tensor(name, x)


def _check_dim(x: torch.Tensor, dim: int) -> None:
    if x.ndim == 0 or not is_int(dim) or not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"dim must lie in [{-x.ndim}, {x.ndim}) for a {x.ndim}-d tensor, got {dim}"
        )


def relu(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{ReLU}(x) = \max(0, x)`; its derivative is 1 for :math:`x>0`, else 0."""
    _check_float(x)
    return torch.clamp(x, min=0)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    r"""Gaussian error linear unit :math:`\mathrm{GELU}(x) = x\,\Phi(x)` (Hendrycks & Gimpel).

    ``approximate="none"``: :math:`\tfrac{x}{2}\,[1 + \operatorname{erf}(x/\sqrt2)]`, exact.
    ``approximate="tanh"``: :math:`\tfrac{x}{2}\,[1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715\,x^3))]`,
    the approximation of the GPT-2 code (Chapter 2 measures its error).
    """
    _check_float(x)
    check_choice("approximate", approximate, GELU_APPROXIMATIONS)
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")


def gelu_grad(x: torch.Tensor) -> torch.Tensor:
    r"""Derivative of the exact GELU: :math:`\Phi(x) + x\,\varphi(x)`, with
    :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}` (used by Chapter 2's hand-written backward pass)."""
    _check_float(x)
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def silu(x: torch.Tensor) -> torch.Tensor:
    r"""Sigmoid linear unit (Swish, :math:`\beta = 1`): :math:`\mathrm{SiLU}(x) = x\,\sigma(x)`."""
    _check_float(x)
    return x * torch.sigmoid(x)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    r"""SwiGLU gating :math:`\mathrm{SiLU}(g) \odot u` (Shazeer 2020).

    In a feed-forward block, :math:`\mathrm{FFN}(x) = (\mathrm{SiLU}(xW_g) \odot xW_u)\,W_d`:
    pass ``gate = x @ W_g`` and ``up = x @ W_u`` (same shape).
    """
    _check_float(gate, "gate")
    _check_float(up, "up")
    if gate.shape != up.shape:
        raise ValueError(
            f"gate and up must have the same shape, got {tuple(gate.shape)} and {tuple(up.shape)}"
        )
    return silu(gate) * up


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Stable :math:`\log\sum_j e^{x_j}` along ``dim``; :math:`-\infty` if every entry is."""
    _check_float(x)
    _check_dim(x, dim)
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf rows: shift by 0
    return (m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))).squeeze(dim)


def _check_logits(x: torch.Tensor, dim: int) -> None:
    _check_float(x)
    _check_dim(x, dim)
    if bool(torch.isnan(x).any()) or bool(torch.isposinf(x).any()):
        raise ValueError("x must not contain NaN or +inf")
    if bool(torch.isneginf(x).all(dim=dim).any()):
        raise ValueError("every entry along dim is -inf for some row: softmax is undefined there")


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Stable :math:`\log\operatorname{softmax}(x)_i = x_i - \log\sum_j e^{x_j}` along ``dim``."""
    _check_logits(x, dim)
    return x - logsumexp(x, dim).unsqueeze(dim)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Stable :math:`\operatorname{softmax}(x)_i = e^{x_i - m} / \sum_j e^{x_j - m}` along ``dim``.

    Invariant to adding a constant to every entry; sums to one; entries may be exactly 0
    or 1 in floating point when logits differ by more than the format's range.
    (Computed directly, not as ``exp(log_softmax)``: in float32 that loses ~1e-5 when the
    logits are large, because :math:`x_i - \log\sum_j e^{x_j}` cancels.)
    """
    _check_logits(x, dim)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)
