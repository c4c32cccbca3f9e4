r"""Position information for Transformers (Chapter 4): sinusoidal, learned, rotary, ALiBi.

Self-attention treats its input as a *set*: permuting the tokens permutes the outputs and
nothing else. Every language model therefore injects position somewhere. This module has
the four schemes the book uses, in the book's notation (:math:`T` positions,
:math:`d_{\text{model}}` or :math:`d_{\text{head}}` dimensions, :math:`n_{\text{head}}` heads):

* :func:`sinusoidal_encoding` — fixed sines and cosines added to the token embeddings
  (Vaswani et al. 2017); :func:`sinusoidal_shift_matrix` is the rotation :math:`M_k` with
  :math:`\mathrm{PE}(p+k) = M_k\,\mathrm{PE}(p)` for every :math:`p`.
* :class:`LearnedPositionalEmbedding` — a trained table :math:`P \in \mathbb R^{T_{\max}
  \times d_{\text{model}}}` added to the token embeddings (GPT-1/2/3).
* :func:`apply_rope` — rotary position embedding (Su et al. 2021): rotate each pair of
  query/key coordinates by an angle proportional to the position, so that the score
  :math:`\langle R_m q, R_n k\rangle` depends on :math:`n - m` only. Its frequencies come
  from :func:`rope_frequencies`, which also implements the context-extension rules:
  position interpolation (Chen et al. 2023), NTK-aware scaling (bloc97 2023) and YaRN's
  frequency ramp (Peng et al. 2023), with :func:`yarn_attention_factor`.
* :func:`alibi_slopes` and :func:`alibi_bias` — attention with linear biases (Press et al.
  2022): no position vector at all, a penalty :math:`-m_h\,(i-j)` on the attention scores.

Tensors are float64 by default so that identities can be checked to round-off; pass
``dtype`` for float32 work.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_choice,
    check_float_dtype,
    check_float_tensor,
    check_int,
    check_number,
)

#: The context-extension rules understood by :func:`rope_frequencies`.
SCALINGS: tuple[str, ...] = ("none", "linear", "ntk", "yarn")
#: Pairing conventions of :func:`apply_rope`: coordinates (2i, 2i+1), or (i, i + d/2).
LAYOUTS: tuple[str, ...] = ("interleaved", "half")


# ----------------------------------------------------------------------------- checks
def _check_even(name: str, value: object) -> int:
    value = check_int(name, value, 2)
    if value % 2:
        raise ValueError(f"{name} must be even (coordinates come in pairs), got {value!r}")
    return value


def _check_base(base: object) -> float:
    return check_number("base", base, low=1.0, strict=True, what="a finite number > 1")


def _inverse_frequencies(d: int, base: float, dtype: torch.dtype, device=None) -> Tensor:
    r""":math:`\omega_i = b^{-2i/d}` for :math:`i = 0, \dots, d/2 - 1`."""
    exponents = torch.arange(0, d, 2, dtype=torch.float64, device=device) / d
    return (base**-exponents).to(dtype)


# ------------------------------------------------------------------------- sinusoidal
def sinusoidal_encoding(
    n_positions: int,
    d_model: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""The sinusoidal position encoding of Vaswani et al. (2017), shape ``(T, d_model)``.

    .. math::
        \mathrm{PE}_{p,\,2i} = \sin(p\,\omega_i), \qquad
        \mathrm{PE}_{p,\,2i+1} = \cos(p\,\omega_i), \qquad
        \omega_i = b^{-2i/d_{\text{model}}},

    for positions :math:`p = 0, \dots, T-1` and pair index :math:`i = 0, \dots,
    d_{\text{model}}/2 - 1` (Chapter 4, :eq:`eq-sinusoidal`). The wavelengths
    :math:`2\pi/\omega_i` grow geometrically from :math:`2\pi` to almost :math:`2\pi b`.
    """
    n_positions = check_int("n_positions", n_positions, 1)
    d_model = _check_even("d_model", d_model)
    base = _check_base(base)
    check_float_dtype("dtype", dtype)
    omega = _inverse_frequencies(d_model, base, torch.float64)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * omega
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1).reshape(n_positions, d_model)
    return pe.to(dtype)


def sinusoidal_shift_matrix(
    k: float, d_model: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float64
) -> Tensor:
    r"""The matrix :math:`M_k` with :math:`\mathrm{PE}(p + k) = M_k\,\mathrm{PE}(p)` for all p.

    Block diagonal, one :math:`2\times 2` rotation per frequency (Chapter 4,
    :eq:`eq-shift-matrix`):

    .. math::
        M_k = \operatorname{diag}\!\left(
        \begin{pmatrix} \cos k\omega_i & \sin k\omega_i \\
        -\sin k\omega_i & \cos k\omega_i \end{pmatrix}\right)_{i=0}^{d/2-1},

    which follows from the angle-addition formulas. It depends on the offset ``k`` only,
    not on the position: a fixed linear map moves every encoding ``k`` steps along.
    """
    k = check_number("k", k, what="a finite number (an offset in positions)")
    d_model = _check_even("d_model", d_model)
    base = _check_base(base)
    check_float_dtype("dtype", dtype)
    angle = k * _inverse_frequencies(d_model, base, torch.float64)
    c, s = angle.cos(), angle.sin()
    blocks = torch.stack((torch.stack((c, s), -1), torch.stack((-s, c), -1)), -2)
    return torch.block_diag(*blocks).to(dtype)


# ---------------------------------------------------------------------------- learned
class LearnedPositionalEmbedding(nn.Module):
    r"""A learned absolute position table, added to the token embeddings (GPT-1/2/3).

    :math:`\mathbf x_t = E[x_t] + P[t]` with :math:`P \in \mathbb R^{T_{\max}\times
    d_{\text{model}}}` a trained parameter (Chapter 4, :eq:`eq-learned-pe`). It has no
    row for positions :math:`\ge T_{\max}`, so a longer sequence is an error, not a guess.

    Args:
        max_len: :math:`T_{\max}`, the number of rows (GPT-2: 1024; GPT-3: 2048).
        d_model: the embedding width.
        init_std: standard deviation of the normal initialisation (GPT-2 uses 0.01,
            most re-implementations 0.02).
    """

    def __init__(self, max_len: int, d_model: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = check_int("max_len", max_len, 1)
        self.d_model = check_int("d_model", d_model, 1)
        std = check_number("init_std", init_std, low=0.0, strict=False, what="a number >= 0")
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, mean=0.0, std=std)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Return ``x + P[offset : offset + T]`` for ``x`` of shape ``(..., T, d_model)``."""
        check_float_tensor("x", x, shape=f"(..., T, d_model={self.d_model})")
        if x.ndim < 2 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have shape (..., T, d_model={self.d_model}), got {tuple(x.shape)}"
            )
        offset = check_int("offset", offset, 0)
        T = x.shape[-2]
        if offset + T > self.max_len:
            raise ValueError(
                f"x has sequence length T={T} (offset {offset}), beyond the learned table's "
                f"max_len={self.max_len}; a learned table has no rows for longer sequences"
            )
        return x + self.weight[offset : offset + T]


# ------------------------------------------------------------------------------- RoPE
def rope_frequencies(
    d_head: int,
    *,
    base: float = 10000.0,
    scaling: str = "none",
    scale: float = 1.0,
    original_length: int | None = None,
    alpha: float = 1.0,
    beta: float = 32.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""RoPE's rotation frequencies :math:`\theta_i`, shape ``(d_head // 2,)``.

    Without scaling, :math:`\theta_i = b^{-2i/d}` (:math:`d = d_{\text{head}}`, Chapter 4,
    :eq:`eq-rope-freq`). To run a model trained on :math:`L` positions on
    :math:`sL` positions (``scale`` :math:`s \ge 1`), ``scaling`` picks the rule:

    ``"linear"`` — position interpolation (Chen et al. 2023)
        :math:`\theta_i' = \theta_i / s`, the same as feeding positions :math:`m/s`.
    ``"ntk"`` — NTK-aware scaling (bloc97 2023)
        a larger base, :math:`b' = b\,s^{d/(d-2)}`, so :math:`\theta_i' = \theta_i\,
        s^{-2i/(d-2)}`: the highest frequency (:math:`i=0`) is unchanged, the lowest
        (:math:`i = d/2-1`) is divided by exactly :math:`s`.
    ``"yarn"`` — YaRN's "NTK-by-parts" ramp (Peng et al. 2023)
        with the wavelength :math:`\lambda_i = 2\pi/\theta_i` and
        :math:`r_i = L/\lambda_i` (how many turns dimension :math:`i` makes in the
        original context),
        :math:`\gamma(r) = \operatorname{clip}\big((r-\alpha)/(\beta-\alpha), 0, 1\big)` and
        :math:`\theta_i' = (1-\gamma(r_i))\,\theta_i/s + \gamma(r_i)\,\theta_i`:
        dimensions that turn more than :math:`\beta` times in :math:`L` are kept, those
        that turn less than :math:`\alpha` times are interpolated, a linear ramp in
        :math:`r` in between. ``original_length`` is :math:`L`; the paper uses
        :math:`\alpha = 1`, :math:`\beta = 32` for Llama. (Some implementations ramp
        linearly in the dimension index instead, between rounded end points; the
        frequencies then differ slightly inside the ramp.) YaRN also scales the
        attention logits: see :func:`yarn_attention_factor`.
    """
    d_head = _check_even("d_head", d_head)
    base = _check_base(base)
    check_choice("scaling", scaling, SCALINGS)
    check_float_dtype("dtype", dtype)
    s = check_number("scale", scale, low=1.0, strict=False, what="a finite number >= 1")
    if scaling == "none" and s != 1.0:
        raise ValueError(f"scale={scale!r} needs a scaling rule: 'linear', 'ntk' or 'yarn'")
    theta = _inverse_frequencies(d_head, base, torch.float64)
    if scaling == "linear":
        theta = theta / s
    elif scaling == "ntk":
        if d_head < 4:
            raise ValueError(f"d_head must be >= 4 for NTK-aware scaling, got {d_head}")
        theta = _inverse_frequencies(d_head, base * s ** (d_head / (d_head - 2)), torch.float64)
    elif scaling == "yarn":
        if original_length is None:
            raise ValueError("original_length (the training context L) is required for 'yarn'")
        L = check_int("original_length", original_length, 1)
        a = check_number("alpha", alpha, low=0.0, strict=False, what="a number >= 0")
        b = check_number("beta", beta, low=a, strict=True, what=f"a number > alpha={a}")
        r = L * theta / (2 * math.pi)  # L / wavelength
        gamma = ((r - a) / (b - a)).clamp(0.0, 1.0)
        theta = (1 - gamma) * theta / s + gamma * theta
    return theta.to(dtype)


def yarn_attention_factor(scale: float) -> float:
    r"""YaRN's logit scaling :math:`\sqrt{1/t} = 0.1\ln s + 1` (Peng et al. 2023).

    Multiplying both queries and keys by this factor divides the attention logits by the
    temperature :math:`t`, i.e. multiplies them by :math:`(0.1 \ln s + 1)^2`, which keeps
    the softmax from flattening at long range (Chapter 4). Equals 1 for ``scale`` 1.
    """
    s = check_number("scale", scale, low=1.0, strict=False, what="a finite number >= 1")
    return 0.1 * math.log(s) + 1.0


def rope_rotation_matrix(
    position: float,
    d_head: int,
    *,
    base: float = 10000.0,
    freqs: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""The block-diagonal rotation :math:`R_m` of RoPE, shape ``(d_head, d_head)``.

    .. math::
        R_m = \operatorname{diag}\!\left(
        \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\
        \sin m\theta_i & \cos m\theta_i \end{pmatrix}\right)_{i=0}^{d/2-1}

    (Chapter 4, :eq:`eq-rope`), in the interleaved layout. :func:`apply_rope` computes
    :math:`R_m x` without building the matrix; this one is for teaching and testing.
    """
    position = check_number("position", position)
    d_head = _check_even("d_head", d_head)
    check_float_dtype("dtype", dtype)
    theta = _freqs_or_default(freqs, d_head, base)
    angle = position * theta
    c, s = angle.cos(), angle.sin()
    blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)
    return torch.block_diag(*blocks).to(dtype)


def _rope_positions_ok(positions: object, rows: torch.Size) -> bool:
    """Is ``positions`` a real (not bool, not complex) tensor, at least 1-d, that
    broadcasts to ``rows`` = ``x.shape[:-1]`` without enlarging it?"""
    if not isinstance(positions, Tensor) or positions.ndim == 0:
        return False
    if positions.dtype == torch.bool or positions.is_complex():
        return False
    try:
        return torch.broadcast_shapes(positions.shape, rows) == rows
    except RuntimeError:
        return False


def _freqs_or_default(freqs: Tensor | None, d_head: int, base: float) -> Tensor:
    if freqs is None:
        return _inverse_frequencies(d_head, _check_base(base), torch.float64)
    if not isinstance(freqs, Tensor) or freqs.shape != (d_head // 2,):
        shape = tuple(freqs.shape) if isinstance(freqs, Tensor) else type(freqs).__name__
        raise ValueError(f"freqs must be a tensor of shape ({d_head // 2},), got {shape}")
    return freqs.to(torch.float64)


def apply_rope(
    x: Tensor,
    positions: Tensor | None = None,
    *,
    base: float = 10000.0,
    freqs: Tensor | None = None,
    layout: str = "interleaved",
) -> Tensor:
    r"""Rotary position embedding: rotate queries or keys by their positions (Su et al. 2021).

    For ``x`` of shape ``(..., T, d_head)`` and position :math:`m` of each row, every pair
    of coordinates :math:`(x_{2i}, x_{2i+1})` is rotated by the angle :math:`m\theta_i`:

    .. math::
        \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
        \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\
        \sin m\theta_i & \cos m\theta_i \end{pmatrix}
        \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix},

    i.e. :math:`x' = R_m x` (Chapter 4, :eq:`eq-rope`). Rotations preserve norms, and
    :math:`(R_m q)^\top (R_n k) = q^\top R_{n-m} k`, so attention scores depend on the
    offset :math:`n - m` only.

    Args:
        x: queries or keys, ``(..., T, d_head)`` with ``d_head`` even, floating point.
        positions: the position of each row, shape ``(T,)`` or broadcastable to
            ``x.shape[:-1]``; default ``0, 1, …, T-1``. May be fractional (position
            interpolation feeds :math:`m/s`). Per-sequence positions ``(B, T)`` (packed
            documents, a cache offset per row) fit ``x`` of shape ``(B, T, d_head)``; for
            ``(B, n_head, T, d_head)`` pass ``positions[:, None, :]``.
        base: :math:`b` in :math:`\theta_i = b^{-2i/d}` (10,000 in RoFormer and Llama 1–2;
            500,000 in Llama 3). Ignored when ``freqs`` is given.
        freqs: the :math:`d_{\text{head}}/2` frequencies, e.g. from :func:`rope_frequencies`
            with a context-extension rule.
        layout: ``"interleaved"`` pairs coordinates :math:`(2i, 2i+1)` as in the RoFormer
            paper and Meta's Llama code; ``"half"`` pairs :math:`(i, i + d/2)` as in
            GPT-NeoX and Hugging Face's Llama. The two differ by a fixed permutation of
            the coordinates.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ValueError("x must be a floating-point tensor of shape (..., T, d_head)")
    T, d_head = x.shape[-2], x.shape[-1]
    if d_head % 2 or d_head == 0:
        raise ValueError(f"x's last dimension d_head must be even and > 0, got {d_head}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    theta = _freqs_or_default(freqs, d_head, base).to(x.device)
    if positions is None:
        positions = torch.arange(T, dtype=torch.float64, device=x.device)
    elif not _rope_positions_ok(positions, x.shape[:-1]):
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else positions
        raise ValueError(
            f"positions must be a real tensor of shape (T,) = ({T},) or broadcastable to "
            f"x.shape[:-1] = {tuple(x.shape[:-1])}, got {shape} (for x of shape "
            "(B, n_head, T, d_head), give (B, T) positions as positions[:, None, :])"
        )
    angles = positions.to(device=x.device, dtype=torch.float64)[..., None] * theta
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if layout == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    x1, x2 = x[..., : d_head // 2], x[..., d_head // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# ------------------------------------------------------------------------------ ALiBi
def alibi_slopes(n_head: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""ALiBi's head-specific slopes :math:`m_1 > \dots > m_{n_{\text{head}}}` (Press et al. 2022).

    For :math:`n_{\text{head}} = n` a power of two, the geometric sequence
    :math:`m_h = 2^{-8h/n}`, :math:`h = 1, \dots, n` (8 heads: 1/2, 1/4, …, 1/256).
    Otherwise, the paper's rule: with :math:`p` the largest power of two below
    :math:`n`, the :math:`p` slopes of :math:`p` heads followed by the first
    :math:`n - p` of every other slope of :math:`2p` heads,
    :math:`2^{-8(2j-1)/(2p)}`, :math:`j = 1, \dots, n - p` (Chapter 4, :eq:`eq-alibi`).
    """
    n_head = check_int("n_head", n_head, 1)
    check_float_dtype("dtype", dtype)
    p = 1 << (n_head.bit_length() - 1)  # largest power of two <= n_head
    exponents = [-8.0 * h / p for h in range(1, p + 1)]
    exponents += [-8.0 * (2 * j - 1) / (2 * p) for j in range(1, n_head - p + 1)]
    return torch.tensor([2.0**e for e in exponents], dtype=dtype)


def alibi_bias(
    n_head: int, seq_len: int, *, causal: bool = True, dtype: torch.dtype = torch.float64
) -> Tensor:
    r"""ALiBi's additive attention bias, shape ``(n_head, T, T)``.

    Query :math:`i` attending to key :math:`j` gets :math:`-m_h\,(i - j)` added to its
    score, with :math:`m_h` from :func:`alibi_slopes` (Chapter 4, :eq:`eq-alibi`). With
    ``causal=True`` (decoders, as in the paper) the entries :math:`j > i` are
    :math:`-\infty`, so the bias is also the causal mask; ``causal=False`` gives the
    symmetric :math:`-m_h\,|i - j|` used by bidirectional variants.
    """
    n_head = check_int("n_head", n_head, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    causal = check_bool("causal", causal)
    check_float_dtype("dtype", dtype)
    pos = torch.arange(seq_len, dtype=torch.float64)
    dist = pos[:, None] - pos[None, :]  # i - j
    slopes = alibi_slopes(n_head)[:, None, None]
    if not causal:
        return (-slopes * dist.abs()).to(dtype)
    bias = -slopes * dist.clamp(min=0)
    return bias.masked_fill(dist < 0, -math.inf).to(dtype)
