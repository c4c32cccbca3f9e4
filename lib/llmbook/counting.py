r"""Counting a Transformer: parameters, FLOPs, memory and the KV cache (Chapter 6).

Everything here is a closed-form function of a :class:`~llmbook.gpt.GPTConfig`; nothing
builds a model. With :math:`d = d_{\text{model}}`, :math:`d_{\text{ff}}`,
:math:`d_{kv} = n_{\text{kv\_head}}\,d_{\text{head}}`, :math:`V` and :math:`L =
n_{\text{layer}}`, one block has

.. math::
    \begin{aligned}
    &\underbrace{2d^2 + 2d\,d_{kv}}_{W_Q, W_O, W_K, W_V}
    + \underbrace{k\,d\,d_{\text{ff}}}_{\text{FFN}} + \text{biases} + \text{norms}, \\
    &k = 2 \text{ (GELU/ReLU) or } 3 \text{ (SwiGLU)},
    \end{aligned}

which for GPT-2 (:math:`d_{kv} = d`, :math:`d_{\text{ff}} = 4d`) is the familiar
:math:`12d^2` per layer, so :math:`N \approx 12\,L\,d^2` (Kaplan et al. 2020).
:func:`count_parameters` is exact: it equals ``GPT(cfg).num_parameters()``.
"""

from __future__ import annotations

from llmbook._validate import check_bool, check_choice, check_int, check_type
from llmbook.gpt import GPTConfig

#: Optimizers understood by :func:`memory_bytes` and their float32 states per parameter.
OPTIMIZER_STATES: dict[str, int] = {"adam": 2, "sgd_momentum": 1, "sgd": 0}


def _check_cfg(cfg: object) -> GPTConfig:
    return check_type("cfg", cfg, GPTConfig, "a GPTConfig")


def count_parameters(cfg: GPTConfig, non_embedding: bool = False) -> int:
    r"""The exact number of parameters of ``GPT(cfg)`` (Chapter 6, module docstring).

    Embeddings :math:`Vd` (+ :math:`T_{\max} d` for a learned position table), per block
    :math:`2d^2 + 2d\,d_{kv} + k\,d\,d_{\text{ff}}` plus, with ``bias``,
    :math:`2d + 2d_{kv} + (k-1)\,d_{\text{ff}} + d`, plus two norms (:math:`2d` for
    LayerNorm with bias, :math:`d` for RMSNorm or LayerNorm without), a final norm in
    pre-norm models, and an output head :math:`Vd` unless tied. ``non_embedding`` drops
    the token embedding, the position table and an untied head (Kaplan et al.'s :math:`N`).
    """
    cfg = _check_cfg(cfg)
    non_embedding = check_bool("non_embedding", non_embedding)
    d, d_ff, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    assert d_ff is not None and cfg.n_kv_head is not None
    d_kv = cfg.n_kv_head * cfg.d_head
    k = 3 if cfg.activation == "swiglu" else 2
    attn = 2 * d * d + 2 * d * d_kv + (2 * d + 2 * d_kv if cfg.bias else 0)
    ffn = k * d * d_ff + ((k - 1) * d_ff + d if cfg.bias else 0)
    norm = 2 * d if cfg.norm == "layernorm" and cfg.bias else d
    body = cfg.n_layer * (attn + ffn + 2 * norm) + (norm if cfg.prenorm else 0)
    if non_embedding:
        return body
    embeddings = V * d + (cfg.block_size * d if cfg.positional == "learned" else 0)
    return body + embeddings + (0 if cfg.tie_embeddings else V * d)


def flops_per_token(
    cfg: GPTConfig, seq_len: int, *, training: bool = False, include_head: bool = False
) -> float:
    r"""Approximate floating-point operations per token (Kaplan et al. 2020, Table 1).

    .. math::
        \begin{aligned}
        C_{\text{forward}} &\approx 2N + 2\,n_{\text{layer}}\,T\,d_{\text{model}}, \\
        C_{\text{train}} &\approx 3\,C_{\text{forward}} \approx 6N + 6\,n_{\text{layer}}\,T\,
        d_{\text{model}},
        \end{aligned}

    with :math:`N` the non-embedding parameters (:func:`count_parameters` with
    ``non_embedding=True``) and :math:`T` = ``seq_len``. :math:`2N`: every weight is one
    multiply and one add per token. The attention term: :math:`QK^\top` and :math:`AV` each
    cost :math:`2\,t\,d_{\text{model}}` for a query at position :math:`t`; averaged over a
    causal context of :math:`T` that is :math:`4d \cdot T/2 = 2dT` per layer. The backward
    pass costs about twice the forward (gradients for inputs and for weights), hence the 3.
    ``include_head`` adds the output projection's :math:`2\,d_{\text{model}} V`, which
    Kaplan et al. leave out. Norms, activations and the softmax are ignored.
    """
    cfg = _check_cfg(cfg)
    seq_len = check_int("seq_len", seq_len, 1)
    training = check_bool("training", training)
    include_head = check_bool("include_head", include_head)
    forward = (
        2 * count_parameters(cfg, non_embedding=True) + 2 * cfg.n_layer * seq_len * cfg.d_model
    )
    if include_head:
        forward += 2 * cfg.d_model * cfg.vocab_size
    return float(3 * forward if training else forward)


def kv_cache_bytes(cfg: GPTConfig, batch: int, seq_len: int, bytes_per_value: int = 2) -> int:
    r"""Bytes of the KV cache: keys and values of every layer, head and position (Chapter 6).

    .. math::
        2 \cdot n_{\text{layer}} \cdot n_{\text{kv\_head}} \cdot d_{\text{head}} \cdot T
        \cdot B \cdot \text{bytes}.

    Grouped-query attention divides it by :math:`n_{\text{head}}/n_{\text{kv\_head}}`.
    ``bytes_per_value``: 2 for float16/bfloat16, 4 for float32, 1 for 8-bit.
    """
    cfg = _check_cfg(cfg)
    batch = check_int("batch", batch, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    bytes_per_value = check_int("bytes_per_value", bytes_per_value, 1)
    assert cfg.n_kv_head is not None
    return 2 * cfg.n_layer * cfg.n_kv_head * cfg.d_head * seq_len * batch * bytes_per_value


def activation_bytes(cfg: GPTConfig, batch: int, seq_len: int) -> int:
    r"""Activations saved for the backward pass, per Korthikanti et al. (2022, eq. 2).

    .. math::
        n_{\text{layer}}\; T B d_{\text{model}}\,\Big(34 + 5\,\frac{n_{\text{head}}\,T}
        {d_{\text{model}}}\Big) \text{ bytes}.

    Assumptions (theirs): 16-bit activations, 1-byte dropout masks, a GPT-style block with
    :math:`d_{\text{ff}} = 4d_{\text{model}}`, multi-head attention that stores the
    :math:`T\times T` scores and softmax (no FlashAttention), no recomputation, no
    parallelism. The :math:`5 n_{\text{head}} T^2` term is the attention matrices; the 34
    counts the saved inputs of the linear layers, norms, GELU and the dropout masks.
    Embeddings and the logits are left out. For other variants it is an estimate.
    """
    cfg = _check_cfg(cfg)
    batch = check_int("batch", batch, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    s, b, h, a = seq_len, batch, cfg.d_model, cfg.n_head
    return cfg.n_layer * (34 * s * b * h + 5 * a * s * s * b)


def memory_bytes(
    cfg: GPTConfig,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    training: bool = True,
    bytes_per_param: int = 4,
    optimizer: str = "adam",
    kv_cache_bytes_per_value: int = 2,
) -> dict[str, int]:
    r"""Memory in bytes for training or inference, by component (Chapter 6).

    With :math:`P` = :func:`count_parameters` and ``bytes_per_param`` :math:`b`:

    * ``weights`` :math:`= bP`; ``gradients`` :math:`= bP` (training only);
    * ``optimizer`` :math:`= 4 s P`, :math:`s` float32 states per parameter: Adam keeps
      :math:`m` and :math:`v` (:math:`s = 2`, :math:`8P` bytes), SGD with momentum 1,
      plain SGD 0 (training only);
    * ``activations``: :func:`activation_bytes` (training only);
    * ``kv_cache``: :func:`kv_cache_bytes` for ``seq_len`` positions (inference only);
    * ``total``: their sum.

    ``seq_len`` defaults to ``block_size``. Ignored: framework overhead, temporary buffers,
    fragmentation, and mixed precision's float32 master copy (add :math:`4P` for it).
    """
    cfg = _check_cfg(cfg)
    batch = check_int("batch", batch, 1)
    T = cfg.block_size if seq_len is None else check_int("seq_len", seq_len, 1)
    bytes_per_param = check_int("bytes_per_param", bytes_per_param, 1)
    kv_bytes = check_int("kv_cache_bytes_per_value", kv_cache_bytes_per_value, 1)
    training = check_bool("training", training)
    check_choice("optimizer", optimizer, tuple(OPTIMIZER_STATES))
    P = count_parameters(cfg)
    out = {"weights": bytes_per_param * P}
    if training:
        out["gradients"] = bytes_per_param * P
        out["optimizer"] = 4 * OPTIMIZER_STATES[optimizer] * P
        out["activations"] = activation_bytes(cfg, batch, T)
    else:
        out["kv_cache"] = kv_cache_bytes(cfg, batch, T, kv_bytes)
    out["total"] = sum(out.values())
    return out


__all__ = [
    "OPTIMIZER_STATES",
    "activation_bytes",
    "count_parameters",
    "flops_per_token",
    "kv_cache_bytes",
    "memory_bytes",
]
