r"""Weight quantisation: round-to-nearest integer codes, NF4, and the bits they cost
(Chapter 13).

A weight :math:`w` becomes an integer code :math:`q` and is read back as :math:`\hat w`:

* **absmax** (symmetric): :math:`s = \max|w| / q_{\max}` with :math:`q_{\max} = 2^{b-1} - 1`,
  :math:`q = \operatorname{round}(w / s) \in [-q_{\max}, q_{\max}]`, :math:`\hat w = s q`;
* **zero-point** (asymmetric): the range :math:`[\min(w, 0), \max(w, 0)]` is cut into
  :math:`2^b - 1` steps, :math:`s = (\max - \min) / (2^b - 1)`, the integer zero point
  :math:`z = \operatorname{round}(-\min / s)`, :math:`q = \operatorname{clamp}(\operatorname{round}
  (w / s) + z, 0, 2^b - 1)`, :math:`\hat w = s (q - z)`. The range holds 0, so 0 is exactly
  representable (as in GPTQ's quantiser and PyTorch's observers).

Both round to nearest (ties to even, as ``torch.round``), so :math:`|w - \hat w| \le s/2`.
The scale :math:`s` is shared per tensor (``axis=None``), per channel (``axis``: one scale per
index along that dimension, e.g. per row of an ``nn.Linear`` weight with ``axis=0``) or per
group of ``group_size`` consecutive weights along the last dimension (GPTQ, AWQ,
bitsandbytes). A finer granularity gives smaller scales and smaller errors, for more scales
to store: :func:`bits_per_parameter`.

**NF4** (Dettmers et al. 2023, QLoRA) keeps a 16-value codebook :func:`nf4_codebook` of normal
quantiles, scales each block of ``block_size`` weights by its absmax and stores the index of
the nearest entry: :func:`quantize_nf4`.

**GPTQ** (Frantar et al. 2022) rounds a linear layer's weight column by column on the same
grids and feeds each column's rounding error forward to the columns not yet rounded,
through the Cholesky factor of the inverse Hessian of the layer's output error
(:func:`gptq_hessian`, :func:`quantize_gptq`); :func:`quantize_linears` quantises every
``nn.Linear`` of a model in place with round-to-nearest, NF4 or GPTQ (sequentially, layer
by layer, from calibration inputs captured by forward hooks).

Codes are stored one per byte (``int8`` for absmax, ``uint8`` otherwise); packing two 4-bit
codes into a byte is storage, counted by :func:`bits_per_parameter`, not done here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_choice,
    check_float_tensor,
    check_int,
    check_number,
    check_type,
    show,
)
from llmbook.attention import MultiHeadAttention

#: The quantisation schemes a :class:`Quantized` can hold.
SCHEMES = ("absmax", "zeropoint", "nf4")
#: QLoRA's outer quantile, halfway between :math:`1 - \frac{1}{2\cdot 15}` and
#: :math:`1 - \frac{1}{2 \cdot 16}`, so the extreme codes get finite normal quantiles.
NF4_OFFSET = 0.9677083


# ------------------------------------------------------------------------------ the result
@dataclass(frozen=True, eq=False)
class Quantized:
    """Integer codes and what turns them back into weights (Chapter 13).

    ``codes`` has the weights' ``shape``; ``scale`` (and ``zero_point`` for ``"zeropoint"``)
    broadcast against the codes viewed in groups: the whole tensor, one channel, one group of
    ``group_size`` along the last dimension, or for ``"nf4"`` one block of ``group_size``
    consecutive weights of the flattened tensor (``codes`` then index :func:`nf4_codebook`).
    """

    codes: Tensor
    scale: Tensor
    zero_point: Tensor | None
    shape: tuple[int, ...]
    bits: int
    scheme: str
    group_size: int | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        check_choice("scheme", self.scheme, SCHEMES)
        check_int("bits", self.bits, 2, 8)
        check_type("codes", self.codes, Tensor, "a torch.Tensor of integer codes")
        if self.codes.is_floating_point() or self.codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {show(self.codes)}")
        if tuple(self.codes.shape) != tuple(self.shape):
            raise ValueError(f"codes must have shape {tuple(self.shape)}, got {show(self.codes)}")
        check_float_tensor("scale", self.scale, finite=True)
        if self.group_size is not None:
            check_int("group_size", self.group_size, 1)

    def dequantize(self) -> Tensor:
        r"""The weights :math:`\hat w` the codes stand for, in the original dtype and shape."""
        if self.scheme == "nf4":
            flat = self.codes.reshape(-1).to(torch.uint8)
            code, size = nf4_codebook(), self.group_size
            return dequantize_blockwise(flat, self.scale, code, self.shape, size).to(self.dtype)
        q = self.codes.to(self.scale.dtype)
        if self.group_size is not None:
            q = q.reshape(*self.shape[:-1], -1, self.group_size)
        if self.zero_point is not None:
            q = q - self.zero_point.to(self.scale.dtype)
        return (q * self.scale).reshape(self.shape).to(self.dtype)


# ------------------------------------------------------------------------------ checks
def _check_weights(w: object) -> Tensor:
    w = check_float_tensor("w", w, finite=True)
    if w.ndim == 0 or w.numel() == 0:
        raise ValueError(f"w must have at least one dimension and one weight, got {show(w)}")
    return w


def _grouped(w: Tensor, axis: object, group_size: object) -> tuple[Tensor, tuple[int, ...]]:
    """``w`` in float (float64 stays float64) viewed so that reducing over the returned
    dimensions gives one scale per tensor, channel or group; ``group_size`` checked."""
    x = w if w.dtype == torch.float64 else w.float()
    if axis is not None and group_size is not None:
        raise ValueError("axis and group_size: give one of them (or neither), not both")
    if group_size is not None:
        g = check_int("group_size", group_size, 1)
        if w.shape[-1] % g:
            raise ValueError(f"group_size must divide the last dimension {w.shape[-1]}, got {g}")
        return x.reshape(*w.shape[:-1], -1, g), (x.ndim,)
    if axis is None:
        return x, tuple(range(x.ndim))
    a = check_int("axis", axis, -w.ndim, w.ndim - 1) % w.ndim
    return x, tuple(d for d in range(x.ndim) if d != a)


# ------------------------------------------------------------------------------ integer codes
def quantize_absmax(
    w: Tensor, bits: int = 8, axis: int | None = None, group_size: int | None = None
) -> Quantized:
    r"""Symmetric round-to-nearest quantisation to ``bits``-bit signed codes (Chapter 13).

    .. math::
        s = \frac{\max |w|}{2^{b-1} - 1}, \qquad q = \operatorname{round}(w / s), \qquad
        \hat w = s\, q, \qquad |w - \hat w| \le s / 2.

    The maximum is taken over the whole tensor (``axis=None``), over everything but
    dimension ``axis`` (one scale per channel), or over groups of ``group_size`` along the
    last dimension. Codes lie in :math:`[-(2^{b-1} - 1), 2^{b-1} - 1]`, as ``int8``;
    an all-zero group gets scale 1 and codes 0.
    """
    w = _check_weights(w)
    bits = check_int("bits", bits, 2, 8)
    x, dims = _grouped(w, axis, group_size)
    q_max = 2 ** (bits - 1) - 1
    absmax = x.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(absmax > 0, absmax / q_max, torch.ones_like(absmax))
    codes = torch.round(x / scale).clamp(-q_max, q_max).to(torch.int8).reshape(w.shape)
    g = None if group_size is None else int(group_size)
    return Quantized(codes, scale, None, tuple(w.shape), bits, "absmax", g, w.dtype)


def quantize_zeropoint(
    w: Tensor, bits: int = 8, axis: int | None = None, group_size: int | None = None
) -> Quantized:
    r"""Asymmetric round-to-nearest quantisation with an integer zero point (Chapter 13).

    With :math:`m = \min(\min w, 0)` and :math:`M = \max(\max w, 0)`:

    .. math::
        \begin{aligned}
        s &= \frac{M - m}{2^b - 1}, \quad z = \operatorname{round}(-m / s),\\
        q &= \operatorname{clamp}(\operatorname{round}(w / s) + z,\ 0,\ 2^b - 1), \quad
        \hat w = s\,(q - z).
        \end{aligned}

    All :math:`2^b` codes cover the weights' range, so one-signed weights (all positive,
    say) get steps about half as large as :func:`quantize_absmax`'s, which spends half its
    codes on the sign. Still :math:`|w - \hat w| \le s/2`. Codes and zero points are
    ``uint8``; ``axis`` and ``group_size`` as in :func:`quantize_absmax`.
    """
    w = _check_weights(w)
    bits = check_int("bits", bits, 2, 8)
    x, dims = _grouped(w, axis, group_size)
    q_max = 2**bits - 1
    low = x.amin(dim=dims, keepdim=True).clamp(max=0)
    high = x.amax(dim=dims, keepdim=True).clamp(min=0)
    scale = torch.where(high > low, (high - low) / q_max, torch.ones_like(high))
    zero = torch.round(-low / scale).clamp(0, q_max)
    codes = (torch.round(x / scale) + zero).clamp(0, q_max).to(torch.uint8).reshape(w.shape)
    g = None if group_size is None else int(group_size)
    zp = zero.to(torch.uint8)
    return Quantized(codes, scale, zp, tuple(w.shape), bits, "zeropoint", g, w.dtype)


# ------------------------------------------------------------------------------ NF4
def nf4_codebook() -> Tensor:
    r"""The 16 NormalFloat-4 values of QLoRA (Dettmers et al. 2023), from normal quantiles.

    With :math:`\Phi^{-1}` the standard normal quantile function and
    :math:`\delta` = :data:`NF4_OFFSET`: 8 positive values
    :math:`\Phi^{-1}(p)` for 9 points :math:`p` evenly spaced from :math:`\delta` to
    :math:`\tfrac12` (the last, 0, dropped), 7 negative values :math:`-\Phi^{-1}(p)` for 8
    points (the last dropped), plus an exact 0; sorted and divided by
    :math:`\Phi^{-1}(\delta)`, so they span :math:`[-1, 1]`. The points :math:`p` are float32
    from ``torch.linspace``, as in bitsandbytes' ``create_normal_map``, which makes the result
    equal to its published table bit for bit (with float64 points it differs by up to
    :math:`1.1 \times 10^{-7}`).
    """
    p_pos = torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double().numpy()  # float32 points
    p_neg = torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double().numpy()
    values = np.concatenate([norm.ppf(p_pos), [0.0], -norm.ppf(p_neg)])
    table = torch.tensor(values, dtype=torch.float32).sort().values
    return table / table.max()


def _blocks(x: Tensor, block_size: int) -> Tensor:
    flat = x.reshape(-1)
    pad = (-flat.numel()) % block_size
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, block_size)


def quantize_blockwise(x: Tensor, code: Tensor, block_size: int = 2048) -> tuple[Tensor, Tensor]:
    r"""Block-wise quantisation to a codebook (Dettmers et al. 2022; Chapters 8 and 13).

    The flattened tensor is cut into blocks of ``block_size`` values (the last one padded
    with zeros); each block is divided by its absolute maximum :math:`a_b`, and every
    value is replaced by the index of the nearest entry of ``code``:

    .. math::
        q_i = \operatorname{arg\,min}_j \big|\,\mathrm{code}_j - x_i / a_{b(i)}\big|.

    An outlier thus only coarsens its own block.

    Parameters
    ----------
    x : torch.Tensor
        The values (any shape, floating point).
    code : torch.Tensor
        The ascending code values, at most 256 (:func:`llmbook.optim.dynamic_map`,
        :func:`nf4_codebook`).
    block_size : int
        Values per block (2048 in the paper).

    Returns
    -------
    tuple of torch.Tensor
        The codes (``uint8``, ``x.numel()`` of them, flat) and the block maxima
        :math:`a_b` (one per block; float64 for a float64 ``x``, else float32).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
        raise ValueError(f"x must be a non-empty floating-point tensor, got {show(x)}")
    _check_code(code)
    block_size = check_int("block_size", block_size, 1)
    work = x.detach().double() if x.dtype == torch.float64 else x.detach().float()
    blocks = _blocks(work, block_size)
    absmax = blocks.abs().amax(dim=1)
    normed = blocks / absmax.clamp_min(torch.finfo(work.dtype).tiny)[:, None]
    code = code.to(normed)
    mid = (code[1:] + code[:-1]) / 2  # boundaries between neighbouring codes
    q = torch.bucketize(normed.reshape(-1)[: x.numel()], mid).to(torch.uint8)
    return q, absmax


def dequantize_blockwise(
    q: Tensor,
    absmax: Tensor,
    code: Tensor,
    shape: torch.Size | tuple[int, ...],
    block_size: int = 2048,
) -> Tensor:
    r"""Undo :func:`quantize_blockwise`: :math:`\hat x_i = \mathrm{code}_{q_i}\, a_{b(i)}`.

    Parameters
    ----------
    q, absmax : torch.Tensor
        The codes and block maxima of :func:`quantize_blockwise`.
    code : torch.Tensor
        The same code values.
    shape : tuple of int
        The original tensor's shape.
    block_size : int
        The same block size.

    Returns
    -------
    torch.Tensor
        The approximation in the dtype of ``absmax``, shaped ``shape``.
    """
    if not isinstance(q, Tensor) or q.dtype != torch.uint8 or q.ndim != 1:
        raise ValueError(f"q must be a 1-D uint8 tensor of codes, got {show(q)}")
    _check_code(code)
    if not isinstance(shape, tuple | list | torch.Size) or math.prod(shape) != q.numel():
        raise ValueError(f"shape must hold the {q.numel()} values of q, got {show(shape)}")
    block_size = check_int("block_size", block_size, 1)
    n_blocks = -(-q.numel() // block_size)
    if not isinstance(absmax, Tensor) or absmax.shape != (n_blocks,):
        raise ValueError(
            f"absmax must hold one maximum per block ({n_blocks} values), got {show(absmax)}"
        )
    values = code.to(absmax)[q.long()]
    scale = absmax.repeat_interleave(block_size)[: q.numel()]
    return (values * scale).view(tuple(shape))


def _check_code(code: object) -> None:
    if (
        not isinstance(code, Tensor)
        or not code.is_floating_point()
        or code.ndim != 1
        or not 2 <= code.numel() <= 256
        or not bool((code[1:] > code[:-1]).all())
    ):
        raise ValueError(
            f"code must be a 1-D tensor of 2 to 256 ascending code values, got {show(code)}"
        )


def quantize_nf4(w: Tensor, block_size: int = 64) -> Quantized:
    r"""NF4 quantisation (QLoRA): per block of ``block_size`` consecutive weights (of the
    flattened tensor; the last block may be shorter), the absmax scale :math:`s` and, per
    weight, the index of the :func:`nf4_codebook` entry nearest to :math:`w / s`
    (ties to the lower entry):

    .. math::
        q = \arg\min_i |w / s - c_i|, \qquad \hat w = s\, c_q.

    Codes are ``uint8`` in 0..15; the scales are float32 (QLoRA's double quantisation
    stores them in 8 bits: :func:`bits_per_parameter`).
    """
    w = _check_weights(w)
    block = check_int("block_size", block_size, 1)
    work = w if w.dtype == torch.float64 else w.float()
    codes, scale = quantize_blockwise(work, nf4_codebook(), block)
    codes = codes.reshape(w.shape)
    return Quantized(codes, scale, None, tuple(w.shape), 4, "nf4", block, w.dtype)


# ------------------------------------------------------------------------------ GPTQ
def gptq_hessian(x: Tensor) -> Tensor:
    r"""The Hessian of a linear layer's squared output error in its weights (Chapter 13).

    For inputs :math:`X \in \mathbb R^{N \times d_{\text{in}}}` (one row per token, the
    book's row-vector convention) and the error :math:`\lVert X W - X \hat W\rVert_F^2 / N`,
    each output channel's Hessian is the same matrix

    .. math::
        H = \frac{2}{N} X^\top X \in \mathbb R^{d_{\text{in}} \times d_{\text{in}}}

    (the paper writes :math:`2XX^\top` with tokens as columns). Inputs of any leading
    shape ``(..., d_in)`` are flattened to rows; float64 stays float64.
    """
    x = check_float_tensor("x", x, finite=True)
    if x.ndim < 2 or x.shape[-1] == 0 or x.numel() == 0:
        raise ValueError(f"x must hold rows of inputs (..., d_in), got {show(x)}")
    rows = x.reshape(-1, x.shape[-1])
    rows = rows if rows.dtype == torch.float64 else rows.float()
    return 2 * rows.T @ rows / rows.shape[0]


def _grid(w: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor | None]:
    """One round-to-nearest grid per row of ``w``: the scale and (asymmetric) zero point."""
    q = quantize_absmax(w, bits, axis=0) if symmetric else quantize_zeropoint(w, bits, axis=0)
    zero = None if q.zero_point is None else q.zero_point.to(q.scale.dtype)
    return q.scale, zero


def _round(w: Tensor, scale: Tensor, zero: Tensor | None, bits: int) -> tuple[Tensor, Tensor]:
    """Codes and values of the column(s) ``w`` on a fixed grid (round to nearest)."""
    if zero is None:
        q_max = 2 ** (bits - 1) - 1
        codes = torch.round(w / scale).clamp(-q_max, q_max)
        return codes, scale * codes
    codes = (torch.round(w / scale) + zero).clamp(0, 2**bits - 1)
    return codes, scale * (codes - zero)


def quantize_gptq(
    w: Tensor,
    H: Tensor,
    bits: int = 4,
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    block_size: int = 128,
    damp: float = 0.01,
) -> Quantized:
    r"""GPTQ (Frantar et al. 2022): quantise a linear layer's weight column by column,
    spreading each column's rounding error over the columns not yet quantised (Chapter 13).

    ``w`` is an ``nn.Linear`` weight, ``(d_out, d_in)``: each row is one output channel and
    each column meets one input feature. With :math:`H` from :func:`gptq_hessian` (plus
    :math:`\lambda I`, :math:`\lambda` = ``damp`` times its mean diagonal) and the
    upper Cholesky factor :math:`U` of :math:`H^{-1}` (:math:`H^{-1} = U^\top U`), column
    :math:`j` in turn is rounded to the grid, :math:`\hat w_j = \operatorname{q}(w_j)`, and
    the later columns absorb its error:

    .. math::
        e_j = \frac{w_j - \hat w_j}{U_{jj}}, \qquad
        w_k \leftarrow w_k - e_j\, U_{jk} \quad (k > j),

    the optimal-brain-surgeon update of the remaining weights for the error
    :math:`\lVert XW^\top - X\hat W^\top\rVert^2`. Updates are applied lazily: within
    a block of ``block_size`` columns at once, and to the columns after the block in one
    matrix product at its end (the same numbers, fewer passes over memory).

    The grid is the round-to-nearest one of :func:`quantize_zeropoint` (or
    :func:`quantize_absmax` with ``symmetric``): per row of the original weight, or with
    ``group_size`` per row and group of columns, fixed when the loop reaches the group's
    first column (from its weights updated so far). Blocks are then a multiple of
    ``group_size``, so a group's grid never sees stale weights. Columns whose input is
    always 0 (:math:`H_{jj} = 0`) are set to 0.

    Returns
    -------
    Quantized
        Codes, scales (and zero points) in the layout of :func:`quantize_zeropoint`:
        ``scale`` ``(d_out, 1)``, or ``(d_out, d_in / group_size, 1)`` with groups.
    """
    w = _check_weights(w)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-d weight (d_out, d_in), got {show(w)}")
    d_out, d_in = w.shape
    H = check_float_tensor("H", H, ndim=2, finite=True)
    if H.shape != (d_in, d_in):
        raise ValueError(f"H must be (d_in, d_in) = ({d_in}, {d_in}), got {show(H)}")
    bits = check_int("bits", bits, 2, 8)
    if group_size is not None:
        group_size = check_int("group_size", group_size, 1)
        if d_in % group_size:
            raise ValueError(f"group_size must divide d_in = {d_in}, got {group_size}")
    symmetric = check_bool("symmetric", symmetric)
    block = check_int("block_size", block_size, 1)
    damp = check_number("damp", damp, low=0.0)
    dtype = torch.float64 if w.dtype == torch.float64 else torch.float32
    W, H = w.detach().to(dtype).clone(), H.detach().to(dtype).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(d_in, dtype=dtype)
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except RuntimeError:
        raise ValueError("H must be positive definite after dampening; raise damp") from None
    if group_size is not None:
        block = max(1, block // group_size) * group_size
    codes, scales, zeros = torch.zeros_like(W), [], []
    scale, zero = _grid(W, bits, symmetric)
    for i1 in range(0, d_in, block):
        i2 = min(i1 + block, d_in)
        W1, E1, U1 = W[:, i1:i2].clone(), torch.zeros_like(W[:, i1:i2]), U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if group_size is not None and (i1 + i) % group_size == 0:
                scale, zero = _grid(W1[:, i : i + group_size], bits, symmetric)
                scales.append(scale)
                zeros.append(zero)
            c, q = _round(W1[:, i : i + 1], scale, zero, bits)
            codes[:, i1 + i] = c[:, 0]
            err = (W1[:, i : i + 1] - q) / U1[i, i]
            W1[:, i:] -= err * U1[i : i + 1, i:]
            E1[:, i] = err[:, 0]
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    if group_size is not None:
        scale = torch.stack(scales, dim=1)
        zero = None if symmetric else torch.stack(zeros, dim=1)  # type: ignore[arg-type]
    kind = torch.int8 if symmetric else torch.uint8
    zp = None if zero is None else zero.to(torch.uint8)
    scheme = "absmax" if symmetric else "zeropoint"
    return Quantized(codes.to(kind), scale, zp, (d_out, d_in), bits, scheme, group_size, w.dtype)


def _input_owner(model: nn.Module, name: str) -> nn.Module:
    """The module whose first input is the input of the linear layer ``name``: the layer
    itself, or for the q/k/v projections of llmbook's attention the attention layer, which
    multiplies long inputs by the three weights at once without calling the projections."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, MultiHeadAttention) and leaf in ("q_proj", "k_proj", "v_proj"):
        return parent
    return model.get_submodule(name)


def _layer_inputs(model: nn.Module, name: str, calibration: Tensor) -> Tensor:
    """The rows the linear layer ``name`` sees when ``model`` reads ``calibration``."""
    inputs: list[Tensor] = []

    def catch(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        inputs.append(args[0].detach())
        raise _Caught  # the rest of the forward pass is not needed

    hook = _input_owner(model, name).register_forward_pre_hook(catch)
    try:
        with torch.no_grad():
            model(calibration)
    except _Caught:
        pass
    finally:
        hook.remove()
    if not inputs:
        raise ValueError(f"model: the layer {name!r} is not called by model(calibration)")
    return inputs[0].reshape(-1, inputs[0].shape[-1])


class _Caught(Exception):
    """Raised by the calibration hook once it holds the layer's input."""


def quantize_linears(
    model: nn.Module,
    method: str,
    bits: int = 4,
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    calibration: Tensor | None = None,
    skip: tuple[str, ...] = ("lm_head",),
) -> dict[str, Quantized]:
    r"""Quantise every ``nn.Linear`` weight of ``model`` in place (Chapter 13): each weight
    is replaced by its dequantised values :math:`\hat W`, and the codes are returned.

    ``method``: ``"rtn"`` (round to nearest: :func:`quantize_zeropoint`, or
    :func:`quantize_absmax` with ``symmetric``, per output channel or per ``group_size``
    group), ``"nf4"`` (:func:`quantize_nf4`, blocks of ``group_size``, default 64;
    ``bits`` must be 4) or ``"gptq"`` (:func:`quantize_gptq`, same grids).

    GPTQ runs **sequentially**, as in the paper: layer by layer in module order, each
    layer's Hessian is computed from its inputs on the ``calibration`` ids ``(B, T)``
    (captured by a forward hook) with every earlier layer already quantised, so later
    layers correct for the errors of earlier ones. Modules named in ``skip`` (default the
    output head, which GPT-2 ties to the token embedding) stay in full precision.

    Returns
    -------
    dict
        ``{module name: Quantized}`` for every quantised layer.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_choice("method", method, ("rtn", "nf4", "gptq"))
    bits = check_int("bits", bits, 2, 8)
    if method == "nf4" and bits != 4:
        raise ValueError(f"bits must be 4 for method='nf4', got {bits}")
    if method == "gptq" and (
        not isinstance(calibration, Tensor) or calibration.is_floating_point()
    ):
        raise ValueError(
            f"calibration must be integer ids (B, T) for method='gptq', got {show(calibration)}"
        )
    if isinstance(skip, str) or not isinstance(skip, tuple | list):
        raise ValueError(f"skip must be a tuple of module names, got {show(skip)}")
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name not in skip
    ]
    out: dict[str, Quantized] = {}
    owner, H = None, None  # q, k and v read the same input: one Hessian for the three
    for name, layer in layers:
        w = layer.weight.data
        if method == "nf4":
            q = quantize_nf4(w, 64 if group_size is None else group_size)
        elif method == "rtn":
            axis = 0 if group_size is None else None
            fn = quantize_absmax if symmetric else quantize_zeropoint
            q = fn(w, bits, axis=axis, group_size=group_size)
        else:
            if _input_owner(model, name) is not owner or H is None:
                owner = _input_owner(model, name)
                H = gptq_hessian(_layer_inputs(model, name, calibration))  # type: ignore[arg-type]
            q = quantize_gptq(w, H, bits, group_size=group_size, symmetric=symmetric)
        layer.weight.data = q.dequantize().to(w.dtype)
        out[name] = q
    return out


# ------------------------------------------------------------------------------ storage
def bits_per_parameter(
    bits: int,
    block_size: int,
    scale_bits: int = 32,
    double_quant_block: int | None = None,
    double_quant_bits: int = 8,
) -> float:
    r"""Storage bits per weight: the code plus its share of the block's scale (Chapter 13).

    .. math::
        b + \frac{b_s}{B} \qquad \text{or, with double quantisation,} \qquad
        b + \frac{b_{dq}}{B} + \frac{b_s}{B \cdot B_{dq}},

    where each block of :math:`B` weights has one scale of :math:`b_s` bits, and double
    quantisation stores those scales in :math:`b_{dq}` bits with one :math:`b_s`-bit scale
    per :math:`B_{dq}` of them. QLoRA: :math:`4 + 32/64 = 4.5`, and with double
    quantisation :math:`4 + 8/64 + 32/(64 \cdot 256) \approx 4.127`.
    """
    bits = check_int("bits", bits, 1, 64)
    block = check_int("block_size", block_size, 1)
    scale_bits = check_int("scale_bits", scale_bits, 1, 64)
    dq_bits = check_int("double_quant_bits", double_quant_bits, 1, 64)
    if double_quant_block is None:
        return bits + scale_bits / block
    dq_block = check_int("double_quant_block", double_quant_block, 1)
    return bits + dq_bits / block + scale_bits / (block * dq_block)


def weight_bytes(n_params: float, bits_per_param: float) -> float:
    r"""Bytes to store ``n_params`` weights at ``bits_per_param`` bits each:
    :math:`P\, b / 8` (Chapter 13; e.g. 70e9 weights at 4 bits: 35 GB).

    :func:`llmbook.counting.memory_bytes` counts a whole model's training or inference
    memory from its config; this is the weights alone, at any (fractional) width.
    """
    n = check_number("n_params", n_params, low=0)
    b = check_number("bits_per_param", bits_per_param, low=0, strict=True)
    return n * b / 8


__all__ = [
    "NF4_OFFSET",
    "SCHEMES",
    "Quantized",
    "bits_per_parameter",
    "dequantize_blockwise",
    "gptq_hessian",
    "nf4_codebook",
    "quantize_absmax",
    "quantize_blockwise",
    "quantize_gptq",
    "quantize_linears",
    "quantize_nf4",
    "quantize_zeropoint",
    "weight_bytes",
]
