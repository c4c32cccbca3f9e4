r"""Counting a Transformer: parameters, FLOPs, memory and the KV cache (Chapters 6 and 9).

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

import math

from llmbook._validate import check_bool, check_choice, check_int, check_number, check_type
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


# ------------------------------------------------------------------ compute at scale (Ch. 9)
def training_flops(n_params: float, n_tokens: float) -> dict[str, float]:
    r"""Training compute split into forward and backward passes (Chapter 9).

    .. math::
        C = \underbrace{2ND}_{\text{forward}} + \underbrace{4ND}_{\text{backward}} = 6ND.

    Every weight does one multiply and one add per token in the forward pass; the backward
    pass does that twice, once for the gradient of the layer's input and once for the
    gradient of the weight (Kaplan et al. 2020). Returns ``forward``, ``backward`` and
    ``total`` FLOPs. Attention's :math:`T`-dependent term is in :func:`flops_per_token`.
    """
    N = check_number("n_params", n_params, low=0, strict=True)
    D = check_number("n_tokens", n_tokens, low=0, strict=True)
    return {"forward": 2 * N * D, "backward": 4 * N * D, "total": 6 * N * D}


def gpu_hours(flops: float, peak_flops: float, mfu: float = 1.0) -> float:
    r"""GPU-hours to do ``flops`` on GPUs of peak rate ``peak_flops`` at a utilisation
    ``mfu`` (Chapter 9):

    .. math::
        \text{GPU-hours} = \frac{C}{\text{peak} \cdot \text{MFU} \cdot 3600}.
    """
    C = check_number("flops", flops, low=0, strict=True)
    peak = check_number("peak_flops", peak_flops, low=0, strict=True)
    u = check_number("mfu", mfu, low=0, high=1, strict=True)
    return C / (peak * u * 3600)


def model_flops_utilization(
    flops_per_token: float, tokens_per_second: float, peak_flops: float
) -> float:
    r"""Model FLOPs utilisation, the achieved fraction of the peak rate (Chapter 9):

    .. math::
        \text{MFU} = \frac{C_{\text{token}} \cdot \text{tokens/s}}{\text{peak FLOP/s}}.
    """
    c = check_number("flops_per_token", flops_per_token, low=0, strict=True)
    r = check_number("tokens_per_second", tokens_per_second, low=0, strict=True)
    peak = check_number("peak_flops", peak_flops, low=0, strict=True)
    return c * r / peak


def saved_activation_bytes(
    cfg: GPTConfig, batch: int, seq_len: int, bytes_per_value: int = 4
) -> int:
    r"""Activations saved for backward without dropout, at ``bytes_per_value`` (Chapter 9).

    .. math::
        L\,b\,\big(16\,T B d_{\text{model}} + 2\,n_{\text{head}} T^2 B\big).

    :func:`activation_bytes` (Korthikanti et al. 2022) without its 1-byte dropout masks,
    counted in values: per layer 16 values per token and channel (norm inputs and outputs,
    :math:`\mathbf Q`, :math:`\mathbf K`, :math:`\mathbf V`, the inputs of the two
    projections, the four-times-wider input of the activation and of the second FFN
    matrix) and two :math:`T\times T` tensors per head (the softmax output and the copy
    multiplied by :math:`\mathbf V`). Norm statistics, masks and the output layer are left
    out. With ``bytes_per_value=2`` plus the masks it is :func:`activation_bytes`.
    """
    cfg = _check_cfg(cfg)
    B = check_int("batch", batch, 1)
    T = check_int("seq_len", seq_len, 1)
    b = check_int("bytes_per_value", bytes_per_value, 1)
    return cfg.n_layer * b * (16 * T * B * cfg.d_model + 2 * cfg.n_head * T * T * B)


#: Bytes per parameter of mixed-precision Adam in the ZeRO paper, 16-bit weights and
#: gradients and K = 12 bytes of float32 optimizer state (master weights, m and v).
ZERO_BYTES: dict[str, int] = {"weights": 2, "gradients": 2, "optimizer": 12}


def zero_memory_per_rank(
    n_params: int,
    n_ranks: int,
    stage: int,
    *,
    weight_bytes: int = 2,
    grad_bytes: int = 2,
    optimizer_bytes: int = 12,
) -> dict[str, float]:
    r"""Model-state bytes per rank under ZeRO stage 0–3 (Rajbhandari et al. 2020; Ch. 9).

    With :math:`\Psi` parameters on :math:`N_d` ranks and the defaults (2 + 2 + 12 bytes):

    .. math::
        \begin{aligned}
        \text{stage 0: } &(2 + 2 + K)\Psi, &
        \text{stage 1: } &2\Psi + 2\Psi + K\Psi/N_d, \\
        \text{stage 2: } &2\Psi + (2 + K)\Psi/N_d, &
        \text{stage 3: } &(2 + 2 + K)\Psi/N_d.
        \end{aligned}

    Stage 1 shards the optimizer state, stage 2 also the gradients, stage 3 also the
    weights. Activations, buffers and fragmentation are not included. Returns
    ``weights``, ``gradients``, ``optimizer`` and ``total`` in bytes.
    """
    P = check_int("n_params", n_params, 1)
    n = check_int("n_ranks", n_ranks, 1)
    stage = check_int("stage", stage, 0, 3)
    w = check_int("weight_bytes", weight_bytes, 1)
    g = check_int("grad_bytes", grad_bytes, 1)
    k = check_int("optimizer_bytes", optimizer_bytes, 0)
    out = {
        "weights": w * P / (n if stage >= 3 else 1),
        "gradients": g * P / (n if stage >= 2 else 1),
        "optimizer": k * P / (n if stage >= 1 else 1),
    }
    out["total"] = sum(out.values())
    return out


def pipeline_bubble_fraction(n_stages: int, n_micro: int) -> float:
    r"""Idle fraction of a GPipe or 1F1B pipeline (Huang et al. 2019; Chapter 9):

    .. math::
        \frac{p - 1}{m + p - 1}

    for :math:`p` stages and :math:`m` micro-batches of equal cost per stage.
    """
    p = check_int("n_stages", n_stages, 1)
    m = check_int("n_micro", n_micro, 1)
    return (p - 1) / (m + p - 1)


def ring_allreduce_seconds(
    n_bytes: float, n_ranks: int, bandwidth: float, latency: float = 0.0
) -> float:
    r"""Time of a ring all-reduce of ``n_bytes`` on ``n_ranks`` ranks (Chapter 9).

    .. math::
        t = 2(p - 1)\,\alpha + \frac{2(p - 1)}{p}\,\frac{n}{\beta}:

    a reduce-scatter and an all-gather, each of :math:`p - 1` steps that send
    :math:`n/p` bytes; :math:`\alpha` is the ``latency`` of one step (s) and
    :math:`\beta` the link ``bandwidth`` (bytes/s). One rank needs no communication.
    """
    n = check_number("n_bytes", n_bytes, low=0)
    p = check_int("n_ranks", n_ranks, 1)
    beta = check_number("bandwidth", bandwidth, low=0, strict=True)
    alpha = check_number("latency", latency, low=0)
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n / beta


def checkpoint_memory(n_layer: int, segment: int) -> int:
    r"""Layer activations held at the peak with a checkpoint every ``segment`` layers
    (Chen et al. 2016; Chapter 9), in units of one layer's activations:

    .. math::
        \lceil L/k \rceil + k,

    the stored segment inputs plus one segment recomputed during the backward pass. It
    is smallest near :math:`k = \sqrt L`, where it is about :math:`2\sqrt L`; ``segment``
    = 1 stores every layer's input only, ``segment`` = L stores nothing but the input.
    """
    L = check_int("n_layer", n_layer, 1)
    k = check_int("segment", segment, 1, L)
    return math.ceil(L / k) + k


__all__ = [
    "OPTIMIZER_STATES",
    "ZERO_BYTES",
    "activation_bytes",
    "checkpoint_memory",
    "count_parameters",
    "flops_per_token",
    "gpu_hours",
    "kv_cache_bytes",
    "memory_bytes",
    "model_flops_utilization",
    "pipeline_bubble_fraction",
    "ring_allreduce_seconds",
    "saved_activation_bytes",
    "training_flops",
    "zero_memory_per_rank",
]
