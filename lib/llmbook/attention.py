r"""Scaled dot-product attention, its masks, grouped-query heads and the KV cache (Chapter 5).

The whole mechanism is one equation. For queries :math:`Q \in \mathbb R^{T_q\times d}`,
keys :math:`K \in \mathbb R^{T_k\times d}` and values :math:`V \in \mathbb R^{T_k\times d_v}`,

.. math::
    \begin{aligned}
    \operatorname{Attention}(Q, K, V) &= \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt d}
    + M\Big)\,V, \\
    M_{ij} &= \begin{cases} 0 & \text{query } i \text{ may attend to key } j
    \\ -\infty & \text{otherwise.}\end{cases}
    \end{aligned}

This module has, in the book's notation (:math:`n_{\text{head}}` query heads,
:math:`n_{\text{kv\_head}}` key/value heads, :math:`d_{\text{head}} = d_{\text{model}} /
n_{\text{head}}`):

* :func:`scaled_dot_product_attention` — the equation written out (``"explicit"``, the
  teaching path, which can also return the attention weights) and the same computation
  through :func:`torch.nn.functional.scaled_dot_product_attention` (``"fused"``). The tests
  check that the two agree.
* masks, all boolean with **True = may attend** (torch's convention):
  :func:`causal_mask`, :func:`sliding_window_mask`, :func:`padding_mask`, and
  :func:`combine_masks` to intersect them.
* :func:`repeat_kv` — grouped-query attention (Ainslie et al. 2023): each key/value head is
  shared by :math:`n_{\text{head}} / n_{\text{kv\_head}}` query heads. Multi-head attention
  is :math:`n_{\text{kv\_head}} = n_{\text{head}}`, multi-query attention (Shazeer 2019) is
  :math:`n_{\text{kv\_head}} = 1`.
* :class:`MultiHeadAttention` — the layer, with q/k/v/output projections.
* :class:`KVCache` — keys and values of past positions, so that decoding one token costs
  one new row of :math:`QK^\top` instead of a whole matrix.
* :func:`tiled_attention` — the same attention computed tile by tile with the online softmax
  (FlashAttention's forward pass, Chapter 14): extra memory linear in :math:`T`, not quadratic.

**A query that may attend to nothing** (every key masked, e.g. a padded query row) has no
softmax: :math:`\operatorname{softmax}(-\infty, \dots, -\infty)` is 0/0. Both paths define
its output, and its attention weights, as zeros, never NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_type,
    is_int,
)

#: The two implementations of :func:`scaled_dot_product_attention`.
IMPLEMENTATIONS: tuple[str, ...] = ("explicit", "fused")


# ----------------------------------------------------------------------------- checks
def _check_implementation(implementation: object) -> str:
    return check_choice("implementation", implementation, IMPLEMENTATIONS)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.ndim != 4:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"{name} must be a 4-d floating-point tensor (B, heads, T, d_head), got {shape}"
            )
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"k and v must agree in (B, n_kv_head, T_k), got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0]:
        raise ValueError(
            f"q and k must have the same batch size, got {q.shape[0]} and {k.shape[0]}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same head dimension d_head, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if q.shape[1] % k.shape[1]:
        raise ValueError(
            f"the number of key/value heads ({k.shape[1]}) must divide the number of query "
            f"heads ({q.shape[1]})"
        )


def _check_mask(mask: Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(mask, Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
        what = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool (True = may attend) or float tensor, got {what}")
    ok = mask.ndim <= len(shape) and all(
        m in (1, s) for m, s in zip(reversed(mask.shape), reversed(shape), strict=False)
    )
    if not ok:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to (B, n_head, T_q, T_k) = "
            f"{shape}"
        )
    if mask.is_floating_point() and bool((torch.isnan(mask) | torch.isposinf(mask)).any()):
        raise ValueError(
            "mask is a float bias, so its entries must be finite or -inf (masked); got NaN or +inf"
        )


def _offset(offset: int | None, T_q: int, T_k: int) -> int:
    if offset is None:
        if T_k < T_q:
            raise ValueError(
                f"T_k={T_k} < T_q={T_q}: the default offset T_k - T_q would be negative; "
                "pass offset explicitly"
            )
        return T_k - T_q
    return check_int("offset", offset, 0)


# ------------------------------------------------------------------------------ masks
def causal_mask(
    T_q: int, T_k: int | None = None, *, offset: int | None = None, device=None
) -> Tensor:
    r"""The causal mask, shape ``(T_q, T_k)``: query :math:`i` may attend to key :math:`j`
    iff :math:`j \le \text{offset} + i`.

    Query :math:`i` sits at absolute position :math:`\text{offset} + i`; keys sit at
    positions :math:`0, \dots, T_k - 1` (Chapter 5, :eq:`eq-causal-mask`). The default
    offset is :math:`T_k - T_q`: the queries are the *last* :math:`T_q` positions, which is
    what decoding with a :class:`KVCache` needs. For :math:`T_q = T_k` it is the usual lower
    triangle, the same as ``is_causal=True`` in torch (which always uses offset 0).
    """
    T_q = check_int("T_q", T_q, 1)
    T_k = T_q if T_k is None else check_int("T_k", T_k, 1)
    p = _offset(offset, T_q, T_k)
    i = torch.arange(T_q, device=device)[:, None] + p
    j = torch.arange(T_k, device=device)[None, :]
    return j <= i


def sliding_window_mask(
    T_q: int,
    T_k: int | None = None,
    *,
    window: int,
    offset: int | None = None,
    device=None,
) -> Tensor:
    r"""Causal sliding-window mask, shape ``(T_q, T_k)`` (Longformer, Mistral).

    Query :math:`i` at position :math:`p = \text{offset} + i` may attend to key :math:`j`
    iff :math:`p - w < j \le p`: itself and the :math:`w - 1` positions before it
    (Chapter 5, :eq:`eq-sliding-window`). ``window`` :math:`w = 1` attends to itself only;
    :math:`w \ge T_k` is the causal mask. ``offset`` is as in :func:`causal_mask`.
    """
    window = check_int("window", window, 1)
    mask = causal_mask(T_q, T_k, offset=offset, device=device)
    T_k = mask.shape[1]
    i = torch.arange(T_q, device=device)[:, None] + _offset(offset, T_q, T_k)
    j = torch.arange(T_k, device=device)[None, :]
    return mask & (j > i - window)


def padding_mask(lengths: Tensor | list[int], T: int, *, device=None) -> Tensor:
    r"""Key-padding mask, shape ``(B, 1, 1, T)``: key :math:`j` of sequence :math:`b` is
    visible iff :math:`j < \ell_b`, its length (Chapter 5).

    Right-padded batches put real tokens first; the keys beyond each length are padding and
    must get no attention. The shape broadcasts against ``(B, n_head, T_q, T_k)``. Padded
    *queries* still attend to the real keys; their outputs are simply ignored downstream.
    """
    T = check_int("T", T, 1)
    if isinstance(lengths, np.ndarray):
        lengths = lengths.tolist()
    if isinstance(lengths, Tensor):
        if lengths.ndim != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(
                f"lengths must be a 1-d integer tensor, got {lengths.dtype} "
                f"shape {tuple(lengths.shape)}"
            )
        lengths = lengths.tolist()
    if not isinstance(lengths, list | tuple) or len(lengths) == 0:
        raise ValueError(f"lengths must be a non-empty list of integers, got {lengths!r}")
    for n in lengths:
        if not is_int(n) or not 0 <= n <= T:
            raise ValueError(f"lengths must hold integers in [0, T={T}], got {n!r}")
    ell = torch.tensor([int(n) for n in lengths], device=device)
    return (torch.arange(T, device=device)[None, :] < ell[:, None])[:, None, None, :]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    r"""Intersect boolean masks: a key is visible iff every mask allows it (logical AND,
    broadcast). ``None`` entries mean "no constraint"; all ``None`` gives ``None``."""
    out: Tensor | None = None
    for n, m in enumerate(masks):
        if m is None:
            continue
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            what = m.dtype if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"masks[{n}] must be a bool tensor (True = may attend), got {what}")
        try:
            out = m if out is None else out & m
        except RuntimeError as e:
            raise ValueError(f"masks[{n}] of shape {tuple(m.shape)} does not broadcast") from e
    return out


# -------------------------------------------------------------------------- attention
def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    r"""Repeat each key/value head ``n_rep`` times: ``(B, H_kv, T, d)`` to
    ``(B, H_kv · n_rep, T, d)``.

    Query head :math:`h` uses key/value head :math:`\lfloor h / n_{\text{rep}} \rfloor`
    (grouped-query attention, Chapter 5; the layout of Llama's ``repeat_kv``).
    """
    n_rep = check_int("n_rep", n_rep, 1)
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError("x must be a 4-d tensor (B, n_kv_head, T, d_head)")
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    implementation: str = "explicit",
    return_weights: bool = False,
    scale: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Attention :math:`\operatorname{softmax}(QK^\top/\sqrt{d} + M)\,V`, per head (Chapter 5,
    :eq:`eq-attention`).

    Args:
        q: queries ``(B, n_head, T_q, d_head)``.
        k: keys ``(B, n_kv_head, T_k, d_head)``; ``n_kv_head`` must divide ``n_head``
            (grouped-query attention, see :func:`repeat_kv`).
        v: values ``(B, n_kv_head, T_k, d_v)``.
        mask: broadcastable to ``(B, n_head, T_q, T_k)``; boolean with True = may attend,
            or a float bias :math:`M` added to the scores (:math:`-\infty` = masked).
        implementation: ``"explicit"`` writes the equation out; ``"fused"`` calls
            :func:`torch.nn.functional.scaled_dot_product_attention`.
        return_weights: also return the weights :math:`A` ``(B, n_head, T_q, T_k)``; explicit
            path only (fused kernels never build :math:`A`).
        scale: the factor on :math:`QK^\top`; default :math:`1/\sqrt{d_{\text{head}}}`.

    A query row whose keys are all masked gets output zeros and weights zeros (not NaN).
    """
    impl = _check_implementation(implementation)
    return_weights = check_bool("return_weights", return_weights)
    if return_weights and impl != "explicit":
        raise ValueError(
            f"return_weights=True needs implementation='explicit', got {implementation!r}"
        )
    _check_qkv(q, k, v)
    B, H, T_q, d = q.shape
    T_k = k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    else:
        scale = check_number("scale", scale, low=0.0, strict=True, what="a finite number > 0")
    row_ok = None  # (…, T_q, 1): does the query row see at least one key?
    if mask is not None:
        _check_mask(mask, (B, H, T_q, T_k))
        if mask.dtype == torch.bool:
            row_ok = mask.any(dim=-1, keepdim=True)
            mask = mask | ~row_ok  # unmask empty rows (some kernels give NaN); zeroed below
        else:
            mask = mask.to(q.dtype)
            row_ok = (mask > -math.inf).any(dim=-1, keepdim=True)
            mask = mask.masked_fill(~row_ok, 0.0)
    n_rep = H // k.shape[1]

    if impl == "fused":
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale, enable_gqa=n_rep > 1
        )
        return out if row_ok is None else out.masked_fill(~row_ok, 0.0)

    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1)
    if row_ok is not None:
        weights = weights.masked_fill(~row_ok, 0.0)
    out = weights @ v
    return (out, weights) if return_weights else out


def tiled_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
    scale: float | None = None,
) -> Tensor:
    r"""Exact attention computed tile by tile with the online softmax (FlashAttention's
    forward pass, Dao et al. 2022; Chapter 14).

    The queries are cut into blocks of ``block_q`` rows and the keys and values into blocks
    of ``block_k`` rows. For one query block, the key blocks are visited in order, keeping per
    query row a running maximum :math:`m`, a running denominator :math:`\ell` and an
    unnormalised output :math:`\mathbf o`. A new block of scores
    :math:`\mathbf S = \mathbf Q_i \mathbf K_j^\top / \sqrt{d_{\text{head}}}` updates them by

    .. math::
        \begin{aligned}
        m' &= \max\big(m, \max_j S_{\cdot j}\big), \qquad
        \mathbf P = e^{\mathbf S - m'}, \\
        \ell' &= e^{m - m'}\,\ell + \textstyle\sum_j P_{\cdot j}, \qquad
        \mathbf o' = e^{m - m'}\,\mathbf o + \mathbf P\,\mathbf V_j,
        \end{aligned}

    and the output is :math:`\mathbf o / \ell` after the last block: the same numbers as
    :math:`\operatorname{softmax}(\mathbf Q\mathbf K^\top/\sqrt{d_{\text{head}}})\,\mathbf V`
    up to rounding, without ever holding more than one ``block_q`` × ``block_k`` tile of
    scores, so the extra memory grows like :math:`T` instead of :math:`T^2`.

    Args:
        q: queries ``(B, n_head, T_q, d_head)``.
        k, v: keys and values ``(B, n_kv_head, T_k, d_head)``; ``n_kv_head`` divides
            ``n_head`` (grouped-query attention, :func:`repeat_kv`).
        causal: mask as :func:`causal_mask` (the queries are the last ``T_q`` positions);
            key blocks entirely in a query block's future are skipped, not computed.
        block_q, block_k: tile sizes (integers >= 1).
        scale: the factor on :math:`\mathbf Q\mathbf K^\top`; default
            :math:`1/\sqrt{d_{\text{head}}}`.

    Equal to :func:`scaled_dot_product_attention` with the same mask (the tests check
    1e-12 in float64). This is a loop in Python over tiles, written to be read: on a CPU
    it is slower than torch's fused kernel; the saving it teaches is memory.
    """
    _check_qkv(q, k, v)
    causal = check_bool("causal", causal)
    block_q = check_int("block_q", block_q, 1)
    block_k = check_int("block_k", block_k, 1)
    T_q, T_k = q.shape[2], k.shape[2]
    if causal and T_k < T_q:
        raise ValueError(
            f"causal=True needs T_k >= T_q (the queries are the last positions), got "
            f"T_q={T_q}, T_k={T_k}"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    else:
        scale = check_number("scale", scale, low=0.0, strict=True, what="a finite number > 0")
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    offset = T_k - T_q  # query i sits at position offset + i
    out = q.new_empty(*q.shape[:3], v.shape[-1])
    for i0 in range(0, T_q, block_q):
        qi = q[:, :, i0 : i0 + block_q] * scale
        rows = torch.arange(i0, i0 + qi.shape[2], device=q.device)[:, None] + offset
        m = q.new_full((*qi.shape[:3], 1), -math.inf)  # running max
        ell = q.new_zeros((*qi.shape[:3], 1))  # running sum
        o = q.new_zeros((*qi.shape[:3], v.shape[-1]))  # running output
        last = offset + i0 + qi.shape[2] if causal else T_k  # keys past it are all masked
        for j0 in range(0, last, block_k):
            s = qi @ k[:, :, j0 : j0 + block_k].transpose(-2, -1)
            if causal:
                cols = torch.arange(j0, j0 + s.shape[-1], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            m_safe = m_new.masked_fill(m_new == -math.inf, 0.0)  # a row with no key yet
            p = torch.exp(s - m_safe)
            alpha = torch.exp(m - m_safe)
            ell = alpha * ell + p.sum(dim=-1, keepdim=True)
            o = alpha * o + p @ v[:, :, j0 : j0 + block_k]
            m = m_new
        out[:, :, i0 : i0 + qi.shape[2]] = o / ell
    return out


# ------------------------------------------------------------------------------ cache
class KVCache:
    r"""The keys and values of past positions for **one** attention layer (Chapter 5).

    A model keeps one cache per layer. Each decoding step appends the new positions' keys and
    values with :meth:`update` and attends over everything stored. Storage for ``max_len``
    positions is allocated on the first update (shape ``(B, n_kv_head, max_len, d_head)``), so
    appending is a copy into place, not a reallocation. Meant for inference
    (``torch.no_grad()``): the buffers are overwritten in place.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = check_int("max_len", max_len, 1)
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._length = 0

    @property
    def length(self) -> int:
        """The number of positions stored so far (the offset of the next query)."""
        return self._length

    def reset(self) -> None:
        """Forget every stored position (start a new sequence)."""
        self._k = self._v = None
        self._length = 0

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` stored positions (roll back to a prefix).

        Speculative decoding (Chapter 13) stores the keys and values of draft tokens that the
        target may then reject; truncating forgets them, and the next :meth:`update` writes
        over their slots. ``length`` must lie in ``[0, self.length]``.
        """
        self._length = check_int("length", length, 0, self._length)

    def reorder(self, beam_idx: Tensor) -> None:
        """Keep the rows ``beam_idx`` of the batch, in that order (Chapter 12): row ``i``
        becomes the old row ``beam_idx[i]``. Beam search calls it after each step so that
        every surviving beam carries its parent's keys and values; repeated indices copy a
        row (one prompt becoming several beams), so the batch size may change."""
        if self._k is None or self._v is None:
            raise ValueError("reorder needs a filled cache: call update() first")
        B = self._k.shape[0]
        ok = isinstance(beam_idx, Tensor) and beam_idx.ndim == 1 and beam_idx.numel() > 0
        if not ok or beam_idx.is_floating_point() or beam_idx.dtype == torch.bool:
            raise ValueError(
                "beam_idx must be a non-empty 1-d integer tensor of row indices, got "
                f"{type(beam_idx).__name__} {getattr(beam_idx, 'shape', '')}"
            )
        if int(beam_idx.min()) < 0 or int(beam_idx.max()) >= B:
            raise ValueError(f"beam_idx must hold rows in [0, {B}), got {beam_idx.tolist()}")
        idx = beam_idx.to(device=self._k.device, dtype=torch.long)
        self._k = self._k.index_select(0, idx)
        self._v = self._v.index_select(0, idx)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``, ``v`` of shape ``(B, n_kv_head, T_new, ·)``; return all stored keys
        and values, ``(B, n_kv_head, length, ·)``."""
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, Tensor) or not t.is_floating_point() or t.ndim != 4:
                raise ValueError(
                    f"{name} must be a 4-d floating-point tensor (B, n_kv_head, T_new, d_head)"
                )
        if k.dtype != v.dtype or k.device != v.device:
            raise ValueError(
                f"k and v must share a dtype and device, got {k.dtype} on {k.device} and "
                f"{v.dtype} on {v.device}"
            )
        if self._k is not None and (k.dtype, k.device) != (self._k.dtype, self._k.device):
            raise ValueError(
                f"k and v are {k.dtype} on {k.device}, but the cache holds {self._k.dtype} on "
                f"{self._k.device} (set by its first update); reset() it to start over"
            )
        if k.shape[:3] != v.shape[:3]:
            raise ValueError(f"k and v shapes disagree: {tuple(k.shape)} and {tuple(v.shape)}")
        T_new = k.shape[2]
        if self._length + T_new > self.max_len:
            raise ValueError(
                f"KV cache overflow: {self._length} stored + {T_new} new positions exceeds "
                f"max_len={self.max_len}"
            )
        if self._k is None or self._v is None:
            B, H_kv, _, _ = k.shape
            self._k = k.new_empty(B, H_kv, self.max_len, k.shape[3])
            self._v = v.new_empty(B, H_kv, self.max_len, v.shape[3])
        elif (k.shape[:2], k.shape[3], v.shape[3]) != (
            self._k.shape[:2],
            self._k.shape[3],
            self._v.shape[3],
        ):
            raise ValueError(
                f"k, v of shapes {tuple(k.shape)}, {tuple(v.shape)} do not match the cache's "
                f"(B, n_kv_head, ·, d) = {tuple(self._k.shape)}, {tuple(self._v.shape)}"
            )
        end = self._length + T_new
        self._k[:, :, self._length : end] = k
        self._v[:, :, self._length : end] = v
        self._length = end
        return self._k[:, :, :end], self._v[:, :, :end]


# ------------------------------------------------------------------------------ layer
class MultiHeadAttention(nn.Module):
    r"""Multi-head (and grouped-/multi-query) self-attention (Chapter 5, :eq:`eq-mha`).

    .. math::
        \begin{aligned}
        \operatorname{MHA}(X) &= \operatorname{Concat}(\text{head}_1, \dots,
        \text{head}_{n_{\text{head}}})\,W_O, \\
        \text{head}_h &= \operatorname{Attention}(XW_Q^{h}, XW_K^{g(h)}, XW_V^{g(h)}),
        \end{aligned}

    with :math:`g(h) = \lfloor h\,n_{\text{kv\_head}} / n_{\text{head}} \rfloor` the key/value
    head that query head :math:`h` shares.

    Args:
        d_model: the model width; must be divisible by ``n_head``.
        n_head: query heads; :math:`d_{\text{head}} = d_{\text{model}} / n_{\text{head}}`.
        n_kv_head: key/value heads, dividing ``n_head`` (default ``n_head``: MHA; 1: MQA).
        bias: whether the four projections have biases.
        implementation: ``"explicit"`` or ``"fused"``, see :func:`scaled_dot_product_attention`.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        n_kv_head: int | None = None,
        bias: bool = True,
        implementation: str = "explicit",
    ) -> None:
        super().__init__()
        d_model = check_int("d_model", d_model, 1)
        n_head = check_int("n_head", n_head, 1)
        n_kv_head = n_head if n_kv_head is None else check_int("n_kv_head", n_kv_head, 1)
        bias = check_bool("bias", bias)
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        if n_head % n_kv_head:
            raise ValueError(f"n_head={n_head} must be divisible by n_kv_head={n_kv_head}")
        self.d_model, self.n_head, self.n_kv_head = d_model, n_head, n_kv_head
        self.d_head = d_model // n_head
        self.implementation = _check_implementation(implementation)
        d_kv = n_kv_head * self.d_head
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_kv, bias=bias)
        self.v_proj = nn.Linear(d_model, d_kv, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _check_x(self, x: object) -> Tensor:
        """``x`` if it is ``(B, T, d_model)`` in the dtype and on the device of the weights."""
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), got {shape}")
        w = next(self.parameters())  # q_proj's weight (also when a wrapper holds it)
        if (x.dtype, x.device) != (w.dtype, w.device):
            raise ValueError(
                f"x must match the layer's parameters, {w.dtype} on {w.device}, got {x.dtype} "
                f"on {x.device}; convert x, or the layer with .to(dtype)"
            )
        return x

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
        return_weights: bool = False,
        is_causal: bool = True,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend ``x`` ``(B, T, d_model)`` to itself (and to the cached past, if any).

        ``mask`` (bool, True = may attend, or a float bias) must broadcast to
        ``(B, n_head, T, T_k)`` with ``T_k`` the cache length after this step. With
        ``is_causal`` the causal mask (offset = the cache length before this step) is
        intersected with it. Returns the output ``(B, T, d_model)``, and the weights
        ``(B, n_head, T, T_k)`` when ``return_weights`` (explicit implementation only).
        """
        self._check_x(x)
        B, T, _ = x.shape
        return_weights = check_bool("return_weights", return_weights)
        is_causal = check_bool("is_causal", is_causal)
        if kv_cache is not None:
            check_type("kv_cache", kv_cache, KVCache, "a KVCache or None")
        if return_weights and self.implementation != "explicit":
            raise ValueError(
                f"return_weights=True needs implementation='explicit', got {self.implementation!r}"
            )
        offset = 0 if kv_cache is None else kv_cache.length
        if mask is not None:  # checked before the cache is touched
            _check_mask(mask, (B, self.n_head, T, offset + T))
        q = self.q_proj(x).view(B, T, self.n_head, self.d_head).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.d_head).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)
        if is_causal:
            causal = causal_mask(T, k.shape[2], offset=offset, device=x.device)
            if mask is None or mask.dtype == torch.bool:
                mask = combine_masks(causal, mask)
            else:
                mask = torch.where(causal, mask, -math.inf)
        result = scaled_dot_product_attention(
            q, k, v, mask, implementation=self.implementation, return_weights=return_weights
        )
        out, weights = result if isinstance(result, tuple) else (result, None)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.d_model))
        return (out, weights) if weights is not None else out
