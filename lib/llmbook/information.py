"""Information theory for language models (Chapter 1): entropy, cross-entropy, KL, perplexity.

Every function accepts NumPy arrays (or anything ``numpy.asarray`` takes) and PyTorch
tensors, and answers in the same kind: NumPy in, NumPy out; a tensor in, a tensor out (on
the same device, so it can sit inside a training loop). Logarithms are natural (nats)
unless ``base`` says otherwise; ``base=2`` gives bits.

Conventions, stated once: ``0 · log 0 = 0``; a probability of zero where the reference
distribution has mass gives an infinite cross-entropy or KL divergence (``inf``), which is
the correct value, never ``NaN``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from llmbook._validate import check_int, check_number, show

Array = Any  # a numpy.ndarray, a torch.Tensor, or array-like
_ATOL = 1e-6  # tolerance on "sums to one" (float32 round-off over ~10^5 terms stays below it)


def _backend(*xs: Any) -> Any:
    return torch if any(isinstance(x, torch.Tensor) for x in xs) else np


def _as_float(x: Any, xp: Any, name: str, like: Any = None) -> Array:
    if xp is torch:
        t = torch.as_tensor(x, device=like.device if isinstance(like, torch.Tensor) else None)
        out = t if t.is_floating_point() else t.to(torch.float64)
        bad = not bool(torch.isfinite(out).all()) if out.numel() else False
    else:
        out = np.asarray(x, dtype=np.float64)
        bad = not bool(np.isfinite(out).all()) if out.size else False
    if bad:
        raise ValueError(f"{name} must contain only finite numbers")
    if out.ndim == 0:
        raise ValueError(f"{name} must be an array of probabilities, got a scalar")
    return out


def _check_base(base: float) -> float:
    what = "a positive number other than 1 (e.g. 2 or math.e)"
    b = check_number("base", base, low=0.0, strict=True, what=what)
    if b == 1:
        raise ValueError(f"base must be {what}, got {base!r}")
    return b


def _as_loss(x: Any, name: str, nonnegative: bool = False) -> Array | float:
    """A loss as a float tensor (integers converted), or as a NumPy float64 array or float;
    with ``nonnegative``, refuse values below 0."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
        out = x if x.is_floating_point() else x.to(torch.float64)
        bad = bool(torch.isnan(out).any())
        if nonnegative and (bad or bool((out < 0).any())):
            raise ValueError(f"{name} must be >= 0 (a cross-entropy), got a negative value or NaN")
    else:
        try:
            out = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a number or an array of numbers, got {show(x)}"
            ) from None
        bad = bool(np.isnan(out).any())
        if nonnegative and (bad or bool((out < 0).any())):
            raise ValueError(f"{name} must be >= 0 (a cross-entropy), got {show(x)}")
    if bad:
        raise ValueError(f"{name} must be a number, got NaN")
    return out if isinstance(out, torch.Tensor) or out.ndim else float(out)


def _check_distribution(p: Array, name: str, axis: int) -> None:
    xp = torch if isinstance(p, torch.Tensor) else np
    check_int("axis", axis, -p.ndim, p.ndim - 1)
    if p.shape[axis] == 0:
        raise ValueError(f"{name} is empty along axis {axis}; a distribution needs an outcome")
    if bool((p < 0).any()):
        raise ValueError(f"{name} has negative entries; probabilities must be >= 0")
    total = p.sum(axis) if xp is np else p.sum(dim=axis)
    if not bool((abs(total - 1) <= _ATOL * max(1, p.shape[axis] ** 0.5)).all()):
        raise ValueError(f"{name} must sum to 1 along axis {axis} (within {_ATOL:g}); got {total}")


def _xlogy(x: Array, y: Array, xp: Any) -> Array:
    """x · log y with 0 · log y = 0 (also for y = 0)."""
    safe_y = xp.where(x > 0, y, xp.ones_like(y))
    if xp is np:
        with np.errstate(divide="ignore"):  # log 0 = -inf is wanted: p > 0 where q = 0
            return np.where(x > 0, x * np.log(safe_y), 0.0)
    return torch.where(x > 0, x * torch.log(safe_y), torch.zeros_like(x))


def _sum(x: Array, axis: int, xp: Any) -> Array:
    return x.sum(axis) if xp is np else x.sum(dim=axis)


def entropy(p: Array, *, base: float = math.e, axis: int = -1) -> Array:
    r"""Shannon entropy :math:`H(p) = -\sum_x p(x)\log p(x)` (Chapter 1, section
    "Cross-entropy: the loss of every language model", beside :eq:`eq-cross-entropy`).

    ``p`` holds one distribution along ``axis`` (several, batched, along the other axes).
    """
    base = _check_base(base)
    xp = _backend(p)
    p = _as_float(p, xp, "p")
    _check_distribution(p, "p", axis)
    return -_sum(_xlogy(p, p, xp), axis, xp) / math.log(base)


def cross_entropy(p: Array, q: Array, *, base: float = math.e, axis: int = -1) -> Array:
    r"""Cross-entropy :math:`H(p, q) = -\sum_x p(x)\log q(x)` (Chapter 1, :eq:`eq-cross-entropy`).

    ``p`` is the reference ("true") distribution, ``q`` the model's. Infinite where ``q``
    gives zero probability to an outcome that ``p`` gives mass to.
    """
    base = _check_base(base)
    xp = _backend(p, q)
    p, q = _as_float(p, xp, "p"), _as_float(q, xp, "q", like=p)
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}"
        )
    _check_distribution(p, "p", axis)
    _check_distribution(q, "q", axis)
    zero_hit = _sum(xp.where((p > 0) & (q == 0), xp.ones_like(p), xp.zeros_like(p)), axis, xp) > 0
    h = -_sum(_xlogy(p, q, xp), axis, xp) / math.log(base)
    return xp.where(zero_hit, xp.full_like(h, math.inf), h)


def kl_divergence(p: Array, q: Array, *, base: float = math.e, axis: int = -1) -> Array:
    r"""Kullback–Leibler divergence :math:`D_{KL}(p\,\|\,q) = \sum_x p(x)\log\frac{p(x)}{q(x)}`.

    Computed as :math:`H(p, q) - H(p)` term by term, so it is exactly zero when ``p == q``
    and ``inf`` when ``q`` misses part of ``p``'s support (Chapter 1, :eq:`eq-kl`).
    """
    xp = _backend(p, q)
    h_pq = cross_entropy(p, q, base=base, axis=axis)
    p = _as_float(p, xp, "p")
    q = _as_float(q, xp, "q", like=p)
    terms = _xlogy(p, p, xp) - _xlogy(p, q, xp)
    d = _sum(terms, axis, xp) / math.log(_check_base(base))
    d = xp.where(d < 0, xp.zeros_like(d), d)  # round-off only: Gibbs' inequality gives d >= 0
    return xp.where(xp.isinf(h_pq), h_pq, d)


def mutual_information(joint: Array, *, base: float = math.e) -> Array:
    r"""Mutual information :math:`I(X;Y) = \sum_{x,y} p(x,y)\log\frac{p(x,y)}{p(x)p(y)}`.

    ``joint`` is a 2-D table of :math:`p(x, y)` summing to one. Equals
    :math:`H(Y) - H(Y\mid X)` (Chapter 1, :eq:`eq-mutual-information`).
    """
    xp = _backend(joint)
    joint = _as_float(joint, xp, "joint")
    if joint.ndim != 2:
        raise ValueError(f"joint must be a 2-D table p(x, y), got {joint.ndim} dimensions")
    flat = joint.reshape(-1)
    _check_distribution(flat, "joint", 0)
    px = _sum(joint, 1, xp)
    py = _sum(joint, 0, xp)
    product = px[:, None] * py[None, :]
    return kl_divergence(flat, product.reshape(-1), base=base)


def negative_log_likelihood(target_probs: Array, *, base: float = math.e) -> Array:
    r"""Average negative log-likelihood :math:`-\frac{1}{T}\sum_t \log p(x_t\mid x_{<t})`.

    ``target_probs`` holds the probability the model gave to each actual next token; the
    result is the per-token cross-entropy loss of Chapter 1, :eq:`eq-nll`.
    """
    base = _check_base(base)
    xp = _backend(target_probs)
    p = _as_float(target_probs, xp, "target_probs")
    if p.numel() == 0 if xp is torch else p.size == 0:
        raise ValueError("target_probs is empty: the loss of zero tokens is undefined")
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError("target_probs must lie in [0, 1]")
    return -xp.log(p).mean() / math.log(base)


def perplexity(loss: Array | float, *, base: float = math.e) -> Array | float:
    r"""Perplexity :math:`\mathrm{PPL} = b^{\mathcal{L}}` of a per-token loss in base ``b``.

    The loss must be in the same base as ``base`` (nats with ``math.e``, bits with 2):
    :math:`e^{\mathcal{L}_{\text{nats}}} = 2^{\mathcal{L}_{\text{bits}}}` (Chapter 1,
    :eq:`eq-perplexity`). Mixing them is the most common perplexity bug.
    """
    base = _check_base(base)
    if isinstance(loss, torch.Tensor):
        loss = _as_loss(loss, "loss", nonnegative=True)  # integers become float64: e^2, not 4
        return torch.pow(torch.as_tensor(base, dtype=loss.dtype, device=loss.device), loss)
    arr = np.asarray(_as_loss(loss, "loss", nonnegative=True))
    out = np.power(base, arr)
    return float(out) if out.ndim == 0 else out


def nats_to_bits(x: Array | float) -> Array | float:
    r"""Convert nats to bits: :math:`x / \ln 2`."""
    return _as_loss(x, "x") / math.log(2)


def bits_to_nats(x: Array | float) -> Array | float:
    r"""Convert bits to nats: :math:`x \cdot \ln 2`."""
    return _as_loss(x, "x") * math.log(2)


def per_unit(loss_per_token: Array | float, n_tokens: int, n_units: int) -> Array | float:
    r"""Re-express a per-token loss per character, per byte or per word.

    The total code length :math:`T\,\mathcal{L}_{\text{token}}` does not depend on how the
    text was cut, so :math:`\mathcal{L}_{\text{unit}} = \mathcal{L}_{\text{token}}\,T/U` for
    ``n_tokens`` :math:`T` and ``n_units`` :math:`U` covering the same text. This is how
    models with different tokenizers are compared fairly (Chapter 1, :eq:`eq-per-unit`).
    """
    n_tokens, n_units = check_int("n_tokens", n_tokens, 1), check_int("n_units", n_units, 1)
    return _as_loss(loss_per_token, "loss_per_token") * (n_tokens / n_units)


def bits_per_character(
    loss_nats_per_token: Array | float, n_tokens: int, n_chars: int
) -> Array | float:
    """Bits per character of a per-token loss in nats: ``per_unit`` followed by ``nats_to_bits``."""
    check_int("n_chars", n_chars, 1)
    return nats_to_bits(per_unit(loss_nats_per_token, n_tokens, n_chars))


def bits_per_byte(loss_nats_per_token: Array | float, n_tokens: int, n_bytes: int) -> Array | float:
    """Bits per UTF-8 byte of a per-token loss in nats (the tokenizer-free yardstick)."""
    check_int("n_bytes", n_bytes, 1)
    return nats_to_bits(per_unit(loss_nats_per_token, n_tokens, n_bytes))
