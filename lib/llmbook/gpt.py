r"""A decoder-only Transformer language model, GPT-2 and Llama style (Chapter 6).

One configuration, :class:`GPTConfig`, spans the variants the book compares; one module,
:class:`GPT`, implements them all. With tokens :math:`x_1, \dots, x_T`, token embeddings
:math:`E \in \mathbb R^{V\times d_{\text{model}}}` and :math:`n_{\text{layer}}` blocks,

.. math::
    \begin{aligned}
    h^{(0)}_t &= E[x_t] \; (+\, P[t]), \\
    h^{(\ell)} &= \operatorname{Block}_\ell\big(h^{(\ell-1)}\big), \\
    p(x_{t+1} \mid x_{\le t}) &= \operatorname{softmax}\big(\operatorname{Norm}(h^{(L)}_t)
    \,W_U\big),
    \end{aligned}

where a pre-norm block (GPT-2, Llama) is

.. math::
    h \leftarrow h + \operatorname{MHA}(\operatorname{Norm}_1(h)), \qquad
    h \leftarrow h + \operatorname{FFN}(\operatorname{Norm}_2(h)),

and a post-norm block (the original Transformer, GPT-1) is
:math:`h \leftarrow \operatorname{Norm}_1(h + \operatorname{MHA}(h))`,
:math:`h \leftarrow \operatorname{Norm}_2(h + \operatorname{FFN}(h))`, with no final norm.
The output matrix :math:`W_U` is :math:`E^\top` when the embeddings are tied.

Attention reuses :class:`llmbook.attention.MultiHeadAttention` (its projections, the
:class:`~llmbook.attention.KVCache` and :func:`~llmbook.attention.scaled_dot_product_attention`).
Its ``forward`` has no hook between the projections and the scores, where RoPE must rotate
queries and keys, so :class:`CausalSelfAttention` overrides ``forward`` (same parameters,
same equations) and adds RoPE and ALiBi there.

The loaders :meth:`GPT.from_hf_gpt2` and :meth:`GPT.from_hf_llama` copy the weights of a
Hugging Face ``GPT2LMHeadModel`` or ``LlamaForCausalLM``; the tests check that the logits
agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_choice,
    check_float_tensor,
    check_int,
    check_int_ids,
    check_number,
    check_type,
    show,
)
from llmbook.attention import (
    IMPLEMENTATIONS,
    KVCache,
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from llmbook.positional import (
    LearnedPositionalEmbedding,
    alibi_slopes,
    apply_rope,
    rope_frequencies,
    sinusoidal_encoding,
)

POSITIONALS: tuple[str, ...] = ("learned", "sinusoidal", "rope", "alibi")
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")
ACTIVATIONS: tuple[str, ...] = ("gelu", "gelu_tanh", "relu", "swiglu")


#: The lowest sampling temperature :meth:`GPT.generate` accepts: :math:`z/\tau` must stay
#: finite in float32 (logits up to ~1e34); for :math:`\tau \to 0` use ``greedy=True``.
MIN_TEMPERATURE: float = 1e-4


# --------------------------------------------------------------------------- config
@dataclass
class GPTConfig:
    r"""The hyperparameters of :class:`GPT` (Chapter 6). Defaults are GPT-2 small's block.

    Attributes:
        vocab_size: :math:`V`, the number of token ids.
        block_size: the context length :math:`T_{\max}`: the longest sequence the model
            reads (the learned position table has this many rows).
        n_layer: :math:`n_{\text{layer}}`, the number of Transformer blocks.
        n_head: :math:`n_{\text{head}}`, query heads per attention layer.
        n_kv_head: key/value heads (grouped-query attention); must divide ``n_head``.
            ``None`` means ``n_head`` (multi-head attention); 1 is multi-query attention.
        d_model: the residual-stream width; :math:`d_{\text{head}} = d_{\text{model}} /
            n_{\text{head}}`.
        d_ff: the feed-forward hidden width; ``None`` means :math:`4\,d_{\text{model}}`.
        positional: ``"learned"`` (GPT-2), ``"sinusoidal"`` (Vaswani et al.), ``"rope"``
            (Llama) or ``"alibi"`` (BLOOM); see :mod:`llmbook.positional`.
        rope_base: RoPE's base :math:`b` in :math:`\theta_i = b^{-2i/d_{\text{head}}}`.
        norm: ``"layernorm"`` (GPT-2) or ``"rmsnorm"`` (Llama).
        norm_eps: the :math:`\epsilon` inside the norm's square root.
        prenorm: True for pre-LN blocks (GPT-2, Llama), False for post-LN (GPT-1).
        activation: the feed-forward nonlinearity: ``"gelu"`` (exact), ``"gelu_tanh"``
            (GPT-2's approximation), ``"relu"``, or ``"swiglu"`` (gated, Llama; three
            matrices instead of two).
        bias: biases in every linear layer and LayerNorm (GPT-2: True; Llama: False).
            The output head never has one.
        tie_embeddings: use :math:`W_U = E^\top` (GPT-2) instead of a separate head.
        dropout: dropout probability on the embeddings and on each residual branch
            (not on the attention weights).
        scale_residual_init: initialise the residual-output projections with standard
            deviation :math:`0.02/\sqrt{2\,n_{\text{layer}}}` (GPT-2), so the residual
            stream's variance does not grow with depth; otherwise 0.02.
        attn_implementation: ``"explicit"`` or ``"fused"``, see
            :func:`llmbook.attention.scaled_dot_product_attention`.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    d_model: int = 768
    d_ff: int | None = None
    positional: str = "learned"
    rope_base: float = 10000.0
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    prenorm: bool = True
    activation: str = "gelu_tanh"
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    scale_residual_init: bool = True
    attn_implementation: str = "explicit"

    def __post_init__(self) -> None:
        # numbers are stored as plain Python ints and floats (a NumPy scalar is accepted)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        self.n_kv_head = check_int("n_kv_head", self.n_kv_head, 1)
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        self.d_ff = check_int("d_ff", self.d_ff, 1)
        check_choice("positional", self.positional, POSITIONALS)
        check_choice("norm", self.norm, NORMS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("attn_implementation", self.attn_implementation, IMPLEMENTATIONS)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}"
            )
        if self.positional == "rope" and self.d_head % 2:
            raise ValueError(
                f"positional='rope' needs an even head dimension d_model/n_head, got "
                f"{self.d_model}/{self.n_head} = {self.d_head}"
            )
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"positional='sinusoidal' needs an even d_model, got {self.d_model}")
        self.rope_base = check_number("rope_base", self.rope_base, low=1.0, strict=True)
        self.norm_eps = check_number("norm_eps", self.norm_eps, low=0.0, strict=True)
        self.dropout = check_number("dropout", self.dropout, low=0.0, high=1.0, high_strict=True)
        for name in ("prenorm", "bias", "tie_embeddings", "scale_residual_init"):
            setattr(self, name, check_bool(name, getattr(self, name)))

    @property
    def d_head(self) -> int:
        r""":math:`d_{\text{head}} = d_{\text{model}} / n_{\text{head}}`."""
        return self.d_model // self.n_head


# --------------------------------------------------------------------------- layers
class RMSNorm(nn.Module):
    r"""Root-mean-square norm (Zhang & Sennrich 2019), as in Llama (Chapter 6):
    :math:`\operatorname{RMSNorm}(x) = g \odot x / \sqrt{\tfrac1d \sum_i x_i^2 + \epsilon}`.
    """

    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        d = check_int("d", d, 1)
        self.eps = check_number("eps", eps, low=0.0, strict=True)
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(..., d)`` over its last dimension."""
        _check_x(x, self.weight)
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _check_cfg(cfg: object) -> GPTConfig:
    return check_type("cfg", cfg, GPTConfig, "a GPTConfig")


def _check_x(x: object, weight: Tensor) -> Tensor:
    """``x`` ``(..., d)``, if it matches ``weight`` (``(d_out, d)`` or ``(d,)``) in its last
    dimension, dtype and device."""
    x = check_float_tensor("x", x, shape="(..., d)")
    d = weight.shape[-1]
    if x.ndim == 0 or x.shape[-1] != d:
        raise ValueError(f"x must have shape (..., {d}), got {tuple(x.shape)}")
    if (x.dtype, x.device) != (weight.dtype, weight.device):
        raise ValueError(
            f"x must match the module's parameters, {weight.dtype} on {weight.device}, got "
            f"{x.dtype} on {x.device}"
        )
    return x


def _check_positions(
    positions: object, B: int, T: int, device: torch.device, limit: int | None = None
) -> Tensor:
    """``positions`` as int64 on ``device``: an integer tensor ``(T,)`` or ``(B, T)`` with
    values in ``[0, limit)`` (``limit`` None: any value >= 0)."""
    ok = isinstance(positions, Tensor) and not positions.is_floating_point()
    if not ok or positions.is_complex() or positions.dtype == torch.bool:  # type: ignore[union-attr]
        raise ValueError(
            f"positions must be an integer tensor of shape (T,) or (B, T), got {show(positions)}"
        )
    assert isinstance(positions, Tensor)
    if tuple(positions.shape) not in ((T,), (B, T)):
        raise ValueError(
            f"positions must have shape (T,) = ({T},) or (B, T) = ({B}, {T}), got "
            f"{tuple(positions.shape)}"
        )
    lo, hi = int(positions.min()), int(positions.max())
    if lo < 0 or (limit is not None and hi >= limit):
        allowed = f"in [0, block_size={limit}) (the table's rows)" if limit else ">= 0"
        raise ValueError(f"positions must be {allowed}, got values in [{lo}, {hi}]")
    return positions.to(device=device, dtype=torch.long)


def _check_attn_mask(mask: object, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """``mask`` on ``device``, if it is a bool tensor broadcastable to ``shape``."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = may attend), got {show(mask)}")
    try:
        ok = torch.broadcast_shapes(mask.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to (B, n_head, T, T_k) = {shape}"
        )
    return mask.to(device)


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class CausalSelfAttention(MultiHeadAttention):
    r"""Causal self-attention with the model's position scheme (Chapter 6).

    The parameters and the equation are those of
    :class:`~llmbook.attention.MultiHeadAttention`; ``forward`` is rewritten to rotate
    :math:`q, k` with RoPE (``"half"`` layout, as in Hugging Face Llama) at absolute
    positions ``offset + t`` before the cache stores the keys, or to add ALiBi's bias
    :math:`-m_h (i - j)` to the scores. Explicit ``positions`` replace ``offset + t`` (packed
    sequences restart them at 0 per document), and a ``mask`` can narrow the causal mask.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        _check_cfg(cfg)
        super().__init__(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.attn_implementation)
        self.positional = cfg.positional
        if cfg.positional == "rope":
            freqs = rope_frequencies(cfg.d_head, base=float(cfg.rope_base))
            self.register_buffer("rope_freqs", freqs, persistent=False)
        if cfg.positional == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        kv_cache: KVCache | None = None,
        *,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Attend ``x`` ``(B, T, d_model)`` causally to itself and to the cached past.

        Args:
            positions: each token's position, an integer tensor ``(T,)`` or ``(B, T)`` with
                values >= 0; default ``offset + t``, ``offset`` being the cache length. RoPE
                rotates queries and keys by them (Chapter 4); ALiBi's distance is their
                difference (then the cache must be empty: it does not store positions).
            mask: a bool tensor (True = may attend) broadcastable to ``(B, n_head, T,
                offset + T)``, intersected with the causal mask; e.g. block-diagonal, so
                that documents packed in one row do not attend to each other.
        """
        self._check_x(x)
        if kv_cache is not None:
            check_type("kv_cache", kv_cache, KVCache, "a KVCache or None")
        B, T, _ = x.shape
        offset = 0 if kv_cache is None else kv_cache.length
        if positions is not None:
            positions = _check_positions(positions, B, T, x.device)
            if self.positional == "alibi" and offset > 0:
                raise ValueError(
                    "positions with positional='alibi' need an empty kv_cache: the cache does"
                    " not store the positions of its keys"
                )
        if mask is not None:
            mask = _check_attn_mask(mask, (B, self.n_head, T, offset + T), x.device)
        plain = all(type(m) is nn.Linear for m in (self.q_proj, self.k_proj, self.v_proj))
        if B * T >= 64 and plain:  # many rows: one matmul with [W_Q; W_K; W_V] beats three
            w = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
            b = None
            if self.q_proj.bias is not None:
                b = torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias))  # type: ignore[arg-type]
            d_kv = self.n_kv_head * self.d_head
            q, k, v = F.linear(x, w, b).split((self.d_model, d_kv, d_kv), dim=-1)
        else:  # decoding: the copy would cost more than it saves
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, self.n_head, self.d_head).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.d_head).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.d_head).transpose(1, 2)
        if self.positional == "rope":
            if positions is None:
                pos = torch.arange(offset, offset + T, device=x.device)
            else:  # (B, T) becomes (B, 1, T): the same positions for every head
                pos = positions if positions.ndim == 1 else positions[:, None, :]
            q = apply_rope(q, pos, freqs=self.rope_freqs, layout="half")
            k = apply_rope(k, pos, freqs=self.rope_freqs, layout="half")
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)
        T_k = k.shape[2]
        fast = mask is None and self.positional != "alibi" and T in (1, T_k)
        if self.implementation == "fused" and fast:
            # The same mask said the fast way: no mask for one query (it sees every cached
            # key), torch's is_causal=True (its flash kernel skips masked blocks) for T_q = T_k.
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=T > 1, enable_gqa=self.n_kv_head != self.n_head
            )
            return self.out_proj(out.transpose(1, 2).reshape(B, T, self.d_model))  # type: ignore[union-attr]
        allowed = causal_mask(T, T_k, offset=offset, device=x.device)
        if mask is not None:
            allowed = allowed & mask
        scores_mask: Tensor = allowed
        if self.positional == "alibi":
            if positions is None:
                i = torch.arange(offset, offset + T, device=x.device, dtype=x.dtype)[:, None]
                j = torch.arange(T_k, device=x.device, dtype=x.dtype)[None, :]
            else:  # keys are this step's tokens (empty cache): (T, T) or (B, 1, T, T)
                p = positions.to(x.dtype) if positions.ndim == 1 else positions[:, None].to(x.dtype)
                i, j = p[..., :, None], p[..., None, :]
            bias = -self.alibi_slopes.to(x.dtype)[:, None, None] * (i - j)
            scores_mask = bias.masked_fill(~allowed, -math.inf)
        out = scaled_dot_product_attention(q, k, v, scores_mask, implementation=self.implementation)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, self.d_model))  # type: ignore[union-attr]


class FeedForward(nn.Module):
    r"""The position-wise feed-forward network (Chapter 6):
    :math:`\operatorname{FFN}(x) = \phi(xW_1 + b_1)W_2 + b_2`, or with SwiGLU
    :math:`(\operatorname{SiLU}(xW_g) \odot xW_u)\,W_d`."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        _check_cfg(cfg)
        d, d_ff = cfg.d_model, cfg.d_ff
        assert d_ff is not None
        self.activation = cfg.activation
        self.fc = nn.Linear(d, d_ff, bias=cfg.bias)  # W_1 (or W_g for SwiGLU)
        self.up = nn.Linear(d, d_ff, bias=cfg.bias) if cfg.activation == "swiglu" else None
        self.proj = nn.Linear(d_ff, d, bias=cfg.bias)  # W_2 (or W_d)

    def forward(self, x: Tensor) -> Tensor:
        # torch's one-kernel activations; equal to llmbook.functional's written-out
        # gelu/silu/relu (tests/test_gpt.py), several times faster than the formulas.
        _check_x(x, self.fc.weight)
        h = self.fc(x)
        if self.up is not None:
            h = F.silu(h) * self.up(x)
        elif self.activation == "relu":
            h = F.relu(h)
        else:
            h = F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        return self.proj(h)


def _identity(x: Tensor) -> Tensor:
    return x


class Block(nn.Module):
    """One Transformer block, pre- or post-norm (Chapter 6, see the module docstring)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        _check_cfg(cfg)
        self.prenorm = cfg.prenorm
        self.ln_1, self.attn = _norm(cfg), CausalSelfAttention(cfg)
        self.ln_2, self.mlp = _norm(cfg), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        kv_cache: KVCache | None = None,
        *,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Apply the block to ``x`` ``(B, T, d_model)`` (with the layer's cache, if any);
        ``positions`` and ``mask`` go to :meth:`CausalSelfAttention.forward`."""
        self.attn._check_x(x)
        drop = self.drop if self.drop.p > 0 else _identity
        if self.prenorm:
            x = x + drop(self.attn(self.ln_1(x), kv_cache, positions=positions, mask=mask))
            return x + drop(self.mlp(self.ln_2(x)))
        x = self.ln_1(x + drop(self.attn(x, kv_cache, positions=positions, mask=mask)))
        return self.ln_2(x + drop(self.mlp(x)))


# ---------------------------------------------------------------------------- model
class GPT(nn.Module):
    r"""A decoder-only Transformer language model (Chapter 6; equations in the module
    docstring). ``forward(idx, targets)`` returns logits :math:`(B, T, V)` and, given
    targets, the mean cross-entropy :math:`-\frac1N\sum_t \log p(y_t \mid x_{\le t})`."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = _check_cfg(cfg)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = (
            LearnedPositionalEmbedding(cfg.block_size, cfg.d_model)
            if cfg.positional == "learned"
            else None
        )
        if cfg.positional == "sinusoidal":
            pe = sinusoidal_encoding(cfg.block_size, cfg.d_model, dtype=torch.float32)
            self.register_buffer("sinusoid", pe, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = _norm(cfg) if cfg.prenorm else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def _init_weights(self) -> None:
        """Normal(0, 0.02) weights, zero biases; residual projections optionally scaled."""
        std_res = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                residual = name.endswith(("attn.out_proj", "mlp.proj"))
                std = std_res if residual and self.config.scale_residual_init else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """The number of parameters (a tied matrix counted once). ``non_embedding``
        excludes the token embedding, the learned position table and an untied output
        head: Kaplan et al.'s :math:`N` (Chapter 6), see :func:`llmbook.counting`."""
        non_embedding = check_bool("non_embedding", non_embedding)
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def _check_idx(self, idx: object, name: str = "idx") -> Tensor:
        """``idx`` as int64 ``(B, T)`` ids (any integer dtype accepted) on the model's device."""
        idx = check_int_ids(name, idx, ndim=2, high=self.config.vocab_size)
        if idx.device != self.wte.weight.device:
            raise ValueError(
                f"{name} is on {idx.device}, the model on {self.wte.weight.device}; move one"
            )
        if idx.shape[1] == 0:
            raise ValueError(f"{name} must contain at least one position, got T=0")
        return idx

    def _check_targets(self, targets: object, idx: Tensor) -> Tensor:
        """``targets`` as int64, shaped like ``idx``, ids in ``0..V-1`` or -100 (ignored),
        with at least one scored position."""
        ok = isinstance(targets, Tensor) and targets.shape == idx.shape
        if not ok or targets.is_floating_point() or targets.dtype in (torch.bool, torch.uint8):
            raise ValueError(
                f"targets must be an integer tensor of idx's shape {tuple(idx.shape)} "
                f"(signed, as -100 marks an ignored position), got {show(targets)}"
            )
        targets = targets.long().to(idx.device)
        scored = targets[targets != -100]
        if scored.numel() == 0:
            raise ValueError(
                "targets has no scored position: every target is the ignore index -100, "
                "so the mean loss over no tokens is undefined"
            )
        if int(scored.min()) < 0 or int(scored.max()) >= self.config.vocab_size:
            raise ValueError(f"targets must be ids in 0..{self.config.vocab_size - 1} or -100")
        return targets

    def _logits(
        self,
        idx: Tensor,
        caches: list[KVCache] | None = None,
        last_only: bool = False,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        offset = 0 if caches is None else caches[0].length
        T = idx.shape[1]
        if offset + T > self.config.block_size:
            raise ValueError(
                f"sequence length {offset + T} exceeds the context length "
                f"block_size={self.config.block_size}"
            )
        x = self.wte(idx)
        if positions is not None and self.wpe is not None:
            x = x + self.wpe.weight[positions]  # rows P[p] of the learned table
        elif positions is not None and self.config.positional == "sinusoidal":
            x = x + self.sinusoid[positions].to(x.dtype)
        elif self.wpe is not None:
            x = self.wpe(x, offset)
        elif self.config.positional == "sinusoidal":
            x = x + self.sinusoid[offset : offset + T].to(x.dtype)
        if self.drop.p > 0:
            x = self.drop(x)
        for n, block in enumerate(self.blocks):
            cache = None if caches is None else caches[n]
            x = block(x, cache, positions=positions, mask=mask)
        if last_only:  # generation needs only the next-token distribution
            x = x[:, -1:, :]
        return self.lm_head(self.ln_f(x))

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits ``(B, T, V)`` for ids ``idx`` ``(B, T)``, and the cross-entropy against
        ``targets`` ``(B, T)`` (the next tokens; -100 = ignore) or None.

        ``idx`` may have any integer dtype (``uint8``, ``int32``…), ``targets`` any signed
        one; at least one target must be scored (not -100), else the loss is undefined.
        ``positions`` (integers ``(T,)`` or ``(B, T)``, default ``0, …, T-1``) are each
        token's position: the rows of a learned or sinusoidal table (then below
        ``block_size``), RoPE's angles or ALiBi's distances (Chapter 4). ``mask`` (bool,
        True = may attend, broadcastable to ``(B, n_head, T, T)``) narrows the causal mask
        in every layer. Together they run packed documents: positions restart at 0 in each
        and a block-diagonal mask keeps them apart, which gives each document's logits
        alone (tested).
        """
        idx = self._check_idx(idx)
        B, T = idx.shape
        if positions is not None:
            tables = ("learned", "sinusoidal")
            limit = self.config.block_size if self.config.positional in tables else None
            positions = _check_positions(positions, B, T, idx.device, limit)
        if mask is not None:
            mask = _check_attn_mask(mask, (B, self.config.n_head, T, T), idx.device)
        if targets is not None:  # checked before the forward pass is paid for
            targets = self._check_targets(targets, idx)
        logits = self._logits(idx, positions=positions, mask=mask)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Append ``max_new_tokens`` tokens to ``idx`` ``(B, T)``, one at a time (Chapter 6).

        Each step samples :math:`x_{t+1} \sim \operatorname{softmax}(z_t/\tau)` restricted to
        the ``top_k`` largest logits, or takes :math:`\arg\max z_t` when ``greedy``. With
        ``use_cache`` the keys and values of past positions are kept in a
        :class:`~llmbook.attention.KVCache` per layer, so each step runs one position. Once
        the sequence outgrows ``block_size`` the window slides (only the last
        ``block_size`` tokens are read); positions then shift, the cache is invalid, and the
        remaining steps recompute the window, exactly as ``use_cache=False`` does. Call
        ``model.eval()`` first when ``dropout > 0``. ``temperature`` must be at least
        :data:`MIN_TEMPERATURE` (below it :math:`z/\tau` can overflow; use ``greedy=True``).
        """
        idx = self._check_idx(idx)
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, 0)
        greedy = check_bool("greedy", greedy)
        use_cache = check_bool("use_cache", use_cache)
        if not greedy:
            temperature = check_number(
                "temperature",
                temperature,
                low=MIN_TEMPERATURE,
                what=f"a finite number >= MIN_TEMPERATURE = {MIN_TEMPERATURE:g} (or greedy=True)",
            )
        if top_k is not None:
            top_k = check_int("top_k", top_k, 1)
        if generator is not None:
            check_type("generator", generator, torch.Generator, "a torch.Generator or None")
        L = self.config.block_size
        caches = [KVCache(L) for _ in self.blocks] if use_cache else None
        step_in = idx[:, -L:]
        for _ in range(max_new_tokens):
            if caches is not None and caches[0].length + step_in.shape[1] > L:
                caches, step_in = None, idx[:, -L:]
            logits = self._logits(step_in, caches, last_only=True)[:, -1, :]
            if greedy:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits.float() / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -math.inf)
                probs = torch.softmax(logits.float(), dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
            step_in = nxt if caches is not None else idx[:, -L:]
        return idx

    # ---------------------------------------------------------------------- loaders
    @classmethod
    def from_hf_gpt2(cls, hf_model: Any) -> GPT:
        """A :class:`GPT` with the weights of a Hugging Face ``GPT2LMHeadModel``."""
        c = _hf_config(hf_model, "gpt2", "GPT2LMHeadModel")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if getattr(c, flag, False):
                raise ValueError(f"GPT-2 config option {flag}=True is not supported")
        if not getattr(c, "scale_attn_weights", True):
            raise ValueError("GPT-2 config option scale_attn_weights=False is not supported")
        acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
        acts["relu"] = "relu"
        if c.activation_function not in acts:
            raise ValueError(
                f"GPT-2 activation_function must be one of {tuple(acts)}, "
                f"got {c.activation_function!r}"
            )
        cfg = GPTConfig(
            vocab_size=c.vocab_size,
            block_size=c.n_positions,
            n_layer=c.n_layer,
            n_head=c.n_head,
            d_model=c.n_embd,
            d_ff=c.n_inner if c.n_inner is not None else 4 * c.n_embd,
            norm_eps=c.layer_norm_epsilon,
            activation=acts[c.activation_function],
            tie_embeddings=bool(getattr(c, "tie_word_embeddings", True)),
        )
        return cls.from_hf_gpt2_state_dict(hf_model.state_dict(), cfg)

    @classmethod
    def from_hf_gpt2_state_dict(
        cls, state_dict: dict[str, Tensor], config: GPTConfig | None = None, *, n_head: int = 12
    ) -> GPT:
        """A :class:`GPT` from a GPT-2 state dict (``GPT2LMHeadModel`` or ``GPT2Model``).

        GPT-2 stores its linear maps as ``Conv1D`` with weights ``(d_in, d_out)``, the
        transpose of ``nn.Linear``'s, and fuses :math:`W_Q, W_K, W_V` into one ``c_attn``.
        Without ``config``, the sizes are read from the shapes (``n_head`` cannot be, so it
        is an argument) and the rest is GPT-2's.
        """
        if not isinstance(state_dict, Mapping) or not all(
            isinstance(v, Tensor) for v in state_dict.values()
        ):
            raise ValueError(
                f"state_dict must map parameter names to tensors, got {show(state_dict)}"
            )
        if config is not None:
            check_type("config", config, GPTConfig, "a GPTConfig or None")
        n_head = check_int("n_head", n_head, 1)
        sd = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
        _require_keys(sd, ("wte.weight", "wpe.weight", "h.0.mlp.c_fc.weight"))
        if config is None:
            V, d = sd["wte.weight"].shape
            n_layer = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("h."))
            config = GPTConfig(
                vocab_size=V,
                block_size=sd["wpe.weight"].shape[0],
                n_layer=n_layer,
                n_head=n_head,
                d_model=d,
                d_ff=sd["h.0.mlp.c_fc.weight"].shape[1],
                tie_embeddings="lm_head.weight" not in state_dict
                or state_dict["lm_head.weight"].data_ptr() == sd["wte.weight"].data_ptr(),
            )
        d = config.d_model
        _require_keys(
            sd,
            ["ln_f.weight", "ln_f.bias"]
            + [f"h.{n}.{k}" for n in range(config.n_layer) for k in _GPT2_LAYER],
        )
        out: dict[str, Tensor] = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"]}
        for n in range(config.n_layer):
            h, b = f"h.{n}.", f"blocks.{n}."
            w, bias = sd[h + "attn.c_attn.weight"].t(), sd[h + "attn.c_attn.bias"]
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[b + f"attn.{name}.weight"] = w[j * d : (j + 1) * d]
                out[b + f"attn.{name}.bias"] = bias[j * d : (j + 1) * d]
            pairs = (("attn.c_proj", "attn.out_proj"), ("mlp.c_fc", "mlp.fc"))
            for src, dst in (*pairs, ("mlp.c_proj", "mlp.proj")):
                out[b + dst + ".weight"] = sd[h + src + ".weight"].t()
                out[b + dst + ".bias"] = sd[h + src + ".bias"]
            for src, dst in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
                for p in ("weight", "bias"):
                    out[b + f"{dst}.{p}"] = sd[h + f"{src}.{p}"]
        out["ln_f.weight"], out["ln_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
        out["lm_head.weight"] = state_dict.get("lm_head.weight", sd["wte.weight"])
        return _build(config, out, sd["wte.weight"].dtype)

    @classmethod
    def from_hf_llama(cls, hf_model: Any) -> GPT:
        """A :class:`GPT` with the weights of a Hugging Face ``LlamaForCausalLM``: RoPE in
        the "half" layout, RMSNorm, SwiGLU, grouped-query attention, no biases."""
        c = _hf_config(hf_model, "llama", "LlamaForCausalLM")
        rope = getattr(c, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"only default RoPE is supported, got {rope.get('rope_type')!r}")
        base = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
        if getattr(c, "attention_bias", False) != getattr(c, "mlp_bias", False):
            raise ValueError("attention_bias and mlp_bias must agree (one bias flag)")
        if c.head_dim * c.num_attention_heads != c.hidden_size:
            raise ValueError(f"head_dim={c.head_dim} must be hidden_size / num_attention_heads")
        if c.hidden_act != "silu":
            raise ValueError(f"hidden_act must be 'silu' (SwiGLU), got {c.hidden_act!r}")
        cfg = GPTConfig(
            vocab_size=c.vocab_size,
            block_size=c.max_position_embeddings,
            n_layer=c.num_hidden_layers,
            n_head=c.num_attention_heads,
            n_kv_head=c.num_key_value_heads,
            d_model=c.hidden_size,
            d_ff=c.intermediate_size,
            positional="rope",
            rope_base=float(base),
            norm="rmsnorm",
            norm_eps=c.rms_norm_eps,
            activation="swiglu",
            bias=bool(getattr(c, "attention_bias", False)),
            tie_embeddings=bool(c.tie_word_embeddings),
            scale_residual_init=False,
        )
        sd = hf_model.state_dict()
        out = {
            "wte.weight": sd["model.embed_tokens.weight"],
            "ln_f.weight": sd["model.norm.weight"],
        }
        out["lm_head.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        names = {
            "self_attn.q_proj": "attn.q_proj",
            "self_attn.k_proj": "attn.k_proj",
            "self_attn.v_proj": "attn.v_proj",
            "self_attn.o_proj": "attn.out_proj",
            "mlp.gate_proj": "mlp.fc",
            "mlp.up_proj": "mlp.up",
            "mlp.down_proj": "mlp.proj",
            "input_layernorm": "ln_1",
            "post_attention_layernorm": "ln_2",
        }
        for n in range(cfg.n_layer):
            for src, dst in names.items():
                for p in ("weight", "bias"):
                    key = f"model.layers.{n}.{src}.{p}"
                    if key in sd:
                        out[f"blocks.{n}.{dst}.{p}"] = sd[key]
        return _build(cfg, out, sd["model.embed_tokens.weight"].dtype)


_GPT2_LAYER = tuple(
    f"{m}.{p}"
    for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "ln_1", "ln_2")
    for p in ("weight", "bias")
)


def _hf_config(hf_model: Any, model_type: str, kind: str) -> Any:
    """The config of a Hugging Face model of ``model_type``, or a clear error."""
    c = getattr(hf_model, "config", None)
    if getattr(c, "model_type", None) != model_type or not hasattr(hf_model, "state_dict"):
        raise ValueError(
            f"hf_model must be a Hugging Face {kind} (config.model_type {model_type!r}), "
            f"got {type(hf_model).__name__} with model_type {getattr(c, 'model_type', None)!r}"
        )
    return c


def _require_keys(sd: Mapping[str, Tensor], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(f"state_dict is not a GPT-2 state dict: it lacks {missing[:5]}")


def _build(cfg: GPTConfig, state: dict[str, Tensor], dtype: torch.dtype) -> GPT:
    """Construct a GPT for ``cfg`` and copy ``state`` in; every parameter must be given."""
    model = GPT(cfg).to(dtype)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{k}: shape {tuple(v.shape)} != expected {tuple(own[k].shape)}")
    model.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    if cfg.tie_embeddings:
        model.lm_head.weight = model.wte.weight
    return model


__all__ = [
    "ACTIVATIONS",
    "GPT",
    "MIN_TEMPERATURE",
    "NORMS",
    "POSITIONALS",
    "Block",
    "CausalSelfAttention",
    "FeedForward",
    "GPTConfig",
    "RMSNorm",
]
