r"""Parameter-efficient fine-tuning: LoRA, QLoRA, bottleneck adapters and prefix tuning
(Chapter 15).

Each method freezes the pretrained weights and trains a few new parameters:

* **LoRA** (Hu et al. 2021): a frozen linear map :math:`W \in \mathbb R^{d_{out}\times d_{in}}`
  gets a low-rank update, :math:`y = xW^\top + b + \frac{\alpha}{r}\,\operatorname{drop}(x)
  A^\top B^\top` with :math:`A \in \mathbb R^{r\times d_{in}}` (Kaiming-uniform, as peft) and
  :math:`B \in \mathbb R^{d_{out}\times r}` zero, so the model starts unchanged
  (:class:`LoRALinear`, :func:`inject_lora`). It costs :math:`r(d_{in} + d_{out})` parameters
  per matrix (:func:`lora_parameter_count`) and merges into :math:`W` after training
  (:func:`merge_lora`).
* **QLoRA** (Dettmers et al. 2023): the frozen base is stored in NF4 (:class:`NF4Linear`,
  from :mod:`llmbook.quant`) and dequantised on the fly; LoRA stays in higher precision
  (:func:`inject_qlora`). :func:`finetune_memory_bytes` recomputes the memory arithmetic.
* **Adapters** (Houlsby et al. 2019): :math:`h \mapsto h + \phi(hW_{down} + b_{down})W_{up} +
  b_{up}` with a bottleneck :math:`m \ll d_{\text{model}}` after the attention and/or
  feed-forward output of each block (:class:`Adapter`, :func:`inject_adapters`):
  :math:`2d_{\text{model}}m + d_{\text{model}} + m` parameters each.
* **Prefix tuning** (Li & Liang 2021): :math:`P` trainable key and value vectors per layer
  that every query attends to, :math:`\operatorname{softmax}(q[P_K; K]^\top/\sqrt{d_{head}})
  [P_V; V]` (:class:`PrefixAttention`, :func:`inject_prefix`): :math:`2LPd_{\text{model}}`
  parameters with multi-head attention.

:func:`mark_only_peft_trainable` freezes everything else and
:func:`count_trainable_parameters` counts what is left. The tests check LoRA against
Hugging Face peft on a GPT-2 with random weights (same :math:`A, B`: same logits, same merged
weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook._validate import (
    check_choice,
    check_float_tensor,
    check_int,
    check_number,
    check_type,
    show,
)
from llmbook.attention import KVCache
from llmbook.gpt import GPT, CausalSelfAttention, GPTConfig
from llmbook.quant import Quantized, quantize_nf4

#: The nonlinearities an :class:`Adapter` can use.
ADAPTER_ACTIVATIONS: tuple[str, ...] = ("gelu", "relu")


def _check_linear(name: str, layer: object) -> nn.Module:
    return check_type(name, layer, nn.Linear | NF4Linear, "an nn.Linear or an NF4Linear")


def _check_model(model: object) -> nn.Module:
    return check_type("model", model, nn.Module, "a torch.nn.Module")


def _check_targets(target_modules: object) -> tuple[str, ...]:
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    ok = isinstance(target_modules, Sequence) and len(target_modules) > 0
    if not ok or not all(isinstance(t, str) and t for t in target_modules):  # type: ignore[union-attr]
        raise ValueError(
            "target_modules must be a non-empty sequence of module-name patterns such as "
            f"('q_proj', 'v_proj'), got {show(target_modules)}"
        )
    return tuple(target_modules)  # type: ignore[arg-type]


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    """peft's rule for a list of targets: the full name, or its ending after a dot."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# --------------------------------------------------------------------------- NF4 base
class NF4Linear(nn.Module):
    r"""A frozen linear layer stored in NF4 (Chapter 13's :func:`~llmbook.quant.quantize_nf4`):
    :math:`y = x\hat W^\top + b` with :math:`\hat W` dequantised on every call (QLoRA's
    storage type; the compute type is ``x``'s dtype). The bias stays in full precision."""

    def __init__(self, linear: nn.Linear, block_size: int = 64) -> None:
        super().__init__()
        linear = check_type("linear", linear, nn.Linear, "an nn.Linear")
        q = quantize_nf4(linear.weight.detach(), check_int("block_size", block_size, 1))
        self.register_buffer("codes", q.codes)
        self.register_buffer("scale", q.scale)
        self.block_size, self.out_features, self.in_features = q.group_size, *q.shape
        self.weight_dtype = linear.weight.dtype
        b = linear.bias
        self.bias = None if b is None else nn.Parameter(b.detach().clone(), requires_grad=False)

    @property
    def weight(self) -> Tensor:
        r"""The dequantised weight :math:`\hat W`, ``(out_features, in_features)``."""
        shape = (self.out_features, self.in_features)
        q = Quantized(
            self.codes, self.scale, None, shape, 4, "nf4", self.block_size, self.weight_dtype
        )
        return q.dequantize()

    def forward(self, x: Tensor) -> Tensor:
        """:math:`x\\hat W^\\top + b` for ``x`` ``(..., in_features)``."""
        x = _check_input(x, self.in_features)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), b)


def _check_input(x: object, d_in: int) -> Tensor:
    x = check_float_tensor("x", x, shape="(..., in_features)")
    if x.ndim == 0 or x.shape[-1] != d_in:
        raise ValueError(f"x must have shape (..., {d_in}), got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Module):
    r"""A frozen linear layer plus a trainable low-rank update (Hu et al. 2021; Chapter 15):

    .. math::
        y = xW^\top + b + \tfrac{\alpha}{r}\,\operatorname{drop}(x)\,A^\top B^\top,

    :math:`A` ``(r, d_in)`` Kaiming-uniform with :math:`a = \sqrt5` (peft's and
    ``nn.Linear``'s default, bound :math:`1/\sqrt{d_{in}}`), :math:`B` ``(d_out, r)`` zero.
    ``base`` is an ``nn.Linear`` (its weight is frozen) or an :class:`NF4Linear` (QLoRA).

    ``weight`` is the effective weight :math:`W + \frac{\alpha}{r}BA` (differentiable in
    :math:`A, B`), so code that reads a layer's weight instead of calling it (the book's
    attention fuses :math:`W_Q, W_K, W_V` into one matmul when :math:`BT \ge 64`) computes
    the adapted map; LoRA dropout cannot act there, so reading ``weight`` in training mode
    with ``dropout > 0`` raises.
    """

    def __init__(
        self,
        base: nn.Linear | NF4Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        base = _check_linear("base", base)
        self.r = check_int("r", r, 1)
        self.alpha = check_number("alpha", alpha, low=0.0, strict=True)
        p = check_number("dropout", dropout, low=0.0, high=1.0, high_strict=True)
        if generator is not None:
            check_type("generator", generator, torch.Generator, "a torch.Generator or None")
        for param in base.parameters():
            param.requires_grad_(False)
        self.base = base
        self.scaling = self.alpha / self.r
        self.dropout = nn.Dropout(p)
        w = base.weight
        kw = {"dtype": w.dtype, "device": w.device}
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)  # as peft
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def delta_weight(self) -> Tensor:
        r"""The update :math:`\Delta W = \frac{\alpha}{r} BA`, ``(d_out, d_in)``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    @property
    def weight(self) -> Tensor:
        r"""The effective weight, :math:`W + \Delta W` (or :math:`W` once merged)."""
        if self.merged:
            return self.base.weight
        if self.training and self.dropout.p > 0:
            raise RuntimeError(
                "LoRALinear.weight was read in training mode with dropout > 0: the dropout "
                "acts on the LoRA input and cannot be folded into a weight; call the layer"
            )
        return self.base.weight + self.delta_weight()

    def forward(self, x: Tensor) -> Tensor:
        """:math:`xW^\\top + b + \\frac{\\alpha}{r}\\operatorname{drop}(x)A^\\top B^\\top`."""
        x = _check_input(x, self.in_features)
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)

    def merge(self) -> None:
        r""":math:`W \leftarrow W + \frac{\alpha}{r}BA` in place; the layer then costs one
        matmul. Needs a full-precision ``nn.Linear`` base (a 4-bit base cannot hold it)."""
        if self.merged:
            raise ValueError("this LoRALinear is already merged; unmerge() first")
        if not isinstance(self.base, nn.Linear):
            raise ValueError("merge needs an nn.Linear base; an NF4 base cannot hold W + BA")
        with torch.no_grad():
            self.base.weight += self.delta_weight()
        self.merged = True

    def unmerge(self) -> None:
        r""":math:`W \leftarrow W - \frac{\alpha}{r}BA`: the original weight back (up to one
        rounding of the addition and subtraction)."""
        if not self.merged:
            raise ValueError("this LoRALinear is not merged; merge() first")
        with torch.no_grad():
            self.base.weight -= self.delta_weight()
        self.merged = False


def lora_parameter_count(d_in: int, d_out: int, r: int) -> int:
    r"""Trainable parameters of LoRA on one :math:`d_{out}\times d_{in}` matrix:
    :math:`r(d_{in} + d_{out})` (Hu et al.: :math:`d = k = 4096, r = 8` gives 65,536, 0.39%
    of the matrix's 16,777,216)."""
    d_in, d_out = check_int("d_in", d_in, 1), check_int("d_out", d_out, 1)
    return check_int("r", r, 1) * (d_in + d_out)


def _layer_shapes(cfg: GPTConfig) -> dict[str, tuple[int, int]]:
    """``(d_in, d_out)`` of each linear layer of a block of ``GPT(cfg)``, by name."""
    d, d_ff = cfg.d_model, cfg.d_ff
    assert d_ff is not None and cfg.n_kv_head is not None
    d_kv = cfg.n_kv_head * cfg.d_head
    shapes = {
        "attn.q_proj": (d, d),
        "attn.k_proj": (d, d_kv),
        "attn.v_proj": (d, d_kv),
        "attn.out_proj": (d, d),
        "mlp.fc": (d, d_ff),
        "mlp.proj": (d_ff, d),
    }
    if cfg.activation == "swiglu":
        shapes["mlp.up"] = (d, d_ff)
    return shapes


def lora_model_parameter_count(cfg: GPTConfig, target_modules: Sequence[str], r: int) -> int:
    r"""Trainable parameters of :func:`inject_lora` on ``GPT(cfg)``, from the config alone:
    :math:`L \sum r(d_{in} + d_{out})` over the targeted linear layers of a block."""
    cfg = check_type("cfg", cfg, GPTConfig, "a GPTConfig")
    targets, r = _check_targets(target_modules), check_int("r", r, 1)
    per_block = [(f"blocks.0.{k}", s) for k, s in _layer_shapes(cfg).items()]
    hits = [s for name, s in per_block if _matches(name, targets)]
    if not hits:
        raise ValueError(
            f"target_modules {targets} match no linear layer of a block, "
            f"{tuple(_layer_shapes(cfg))}"
        )
    return cfg.n_layer * sum(lora_parameter_count(a, b, r) for a, b in hits)


def _inject(model: nn.Module, target_modules: object, make) -> list[str]:
    model = _check_model(model)
    targets = _check_targets(target_modules)
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear | NF4Linear) and n and _matches(n, targets)
    ]
    names = [n for n in names if not n.endswith(".base")]  # already wrapped
    if not names:
        raise ValueError(f"target_modules {targets} match no linear layer of the model")
    for n in names:
        _set_module(model, n, make(model.get_submodule(n)))
    return names


def inject_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int,
    alpha: float,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` whose name is a pattern of ``target_modules``
    or ends in ``"." + pattern`` (peft's rule; e.g. ``("q_proj", "v_proj")``) by a
    :class:`LoRALinear`, in place; return the names replaced. A tied output head stays tied
    (its weight is shared, frozen)."""
    r = check_int("r", r, 1)
    alpha = check_number("alpha", alpha, low=0.0, strict=True)
    dropout = check_number("dropout", dropout, low=0.0, high=1.0, high_strict=True)
    return _inject(model, target_modules, lambda m: LoRALinear(m, r, alpha, dropout, generator))


def inject_qlora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int,
    alpha: float,
    dropout: float = 0.0,
    block_size: int = 64,
    generator: torch.Generator | None = None,
) -> list[str]:
    """QLoRA (Dettmers et al. 2023): like :func:`inject_lora`, but each targeted base layer
    is first stored as an :class:`NF4Linear` (blocks of ``block_size`` weights)."""
    r = check_int("r", r, 1)
    alpha = check_number("alpha", alpha, low=0.0, strict=True)
    dropout = check_number("dropout", dropout, low=0.0, high=1.0, high_strict=True)
    block_size = check_int("block_size", block_size, 1)

    def make(m: nn.Module) -> LoRALinear:
        base = NF4Linear(m, block_size) if isinstance(m, nn.Linear) else m
        return LoRALinear(base, r, alpha, dropout, generator)

    return _inject(model, target_modules, make)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every :class:`LoRALinear` of ``model`` and put its base ``nn.Linear`` back in
    its place (peft's ``merge_and_unload``); returns ``model``, now a plain model."""
    model = _check_model(model)
    names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    if isinstance(model, LoRALinear) or not names:
        raise ValueError("model must contain LoRALinear layers (inside it) to merge")
    for n in names:
        layer = model.get_submodule(n)
        if not layer.merged:
            layer.merge()
        _set_module(model, n, layer.base)
    return model


# --------------------------------------------------------------------------- adapters
class Adapter(nn.Module):
    r"""A bottleneck adapter (Houlsby et al. 2019; Chapter 15):
    :math:`h + \phi(hW_{down} + b_{down})W_{up} + b_{up}`, :math:`W_{down}` ``(d_model, m)``,
    :math:`W_{up}` ``(m, d_model)``; :math:`2d_{\text{model}}m + d_{\text{model}} + m`
    parameters. The up-projection starts at normal(0, ``init_std``) weights (0: the adapter
    is exactly the identity) and zero bias."""

    def __init__(
        self,
        d_model: int,
        m: int,
        activation: str = "gelu",
        init_std: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        d_model, m = check_int("d_model", d_model, 1), check_int("m", m, 1)
        self.activation = check_choice("activation", activation, ADAPTER_ACTIVATIONS)
        std = check_number("init_std", init_std, low=0.0)
        if generator is not None:
            check_type("generator", generator, torch.Generator, "a torch.Generator or None")
        self.down, self.up = nn.Linear(d_model, m), nn.Linear(m, d_model)
        with torch.no_grad():
            self.up.weight.normal_(0.0, std, generator=generator)  # std 0: all zeros
            self.up.bias.zero_()

    def forward(self, h: Tensor) -> Tensor:
        """``h`` ``(..., d_model)`` plus the bottleneck's output."""
        h = check_float_tensor("h", h, shape="(..., d_model)")
        if h.ndim == 0 or h.shape[-1] != self.down.in_features:
            raise ValueError(f"h must have shape (..., {self.down.in_features}), got {show(h)}")
        z = self.down(h)
        z = F.gelu(z) if self.activation == "gelu" else F.relu(z)
        return h + self.up(z)


def adapter_parameter_count(d_model: int, m: int) -> int:
    r"""Parameters of one :class:`Adapter`: :math:`2d_{\text{model}}m + d_{\text{model}} + m`."""
    d_model, m = check_int("d_model", d_model, 1), check_int("m", m, 1)
    return 2 * d_model * m + d_model + m


def _check_gpt(model: object) -> GPT:
    return check_type("model", model, GPT, "a llmbook.gpt.GPT")


def inject_adapters(
    model: GPT,
    m: int,
    where: Sequence[str] = ("attn", "mlp"),
    activation: str = "gelu",
    init_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Insert an :class:`Adapter` after the output projection of the attention (``"attn"``)
    and/or the feed-forward network (``"mlp"``) of every block, before the residual addition
    (Houlsby's placement), in place; return the names of the wrapped projections
    (each becomes ``nn.Sequential(projection, adapter)``)."""
    model = _check_gpt(model)
    m = check_int("m", m, 1)
    where = ("attn", "mlp") if where is None else where
    if isinstance(where, str) or not where or any(w not in ("attn", "mlp") for w in where):
        raise ValueError(f"where must be a non-empty subset of ('attn', 'mlp'), got {show(where)}")
    d = model.config.d_model
    names = []
    for n, block in enumerate(model.blocks):
        for part, attr in (("attn", "out_proj"), ("mlp", "proj")):
            if part in where:
                parent = getattr(block, part)
                adapter = Adapter(d, m, activation, init_std, generator)
                adapter.to(dtype=model.wte.weight.dtype, device=model.wte.weight.device)
                setattr(parent, attr, nn.Sequential(getattr(parent, attr), adapter))
                names.append(f"blocks.{n}.{part}.{attr}")
    return names


# --------------------------------------------------------------------------- prefix tuning
class PrefixAttention(nn.Module):
    r"""Prefix tuning of one attention layer (Li & Liang 2021; Chapter 15): trainable keys
    :math:`P_K` and values :math:`P_V`, ``(n_kv_head, n_prefix, d_head)`` each, put in front
    of the layer's own keys and values, so every query attends to them:

    .. math::
        \operatorname{softmax}\big(q\,[P_K; K]^\top / \sqrt{d_{head}} + M\big)\,[P_V; V],

    :math:`M` the causal mask on :math:`K` (the prefix is visible from every position). The
    prefix does not shift the tokens' positions (RoPE still rotates position :math:`t` by
    :math:`t`). It runs through the layer's :class:`~llmbook.attention.KVCache` hook, filled
    with the prefix; so it runs without a cache of its own (``GPT.generate`` with
    ``use_cache=False``), and not with ALiBi.
    """

    def __init__(
        self,
        attn: CausalSelfAttention,
        n_prefix: int,
        init_std: float = 0.02,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        attn = check_type("attn", attn, CausalSelfAttention, "a CausalSelfAttention")
        if attn.positional == "alibi":
            raise ValueError("attn uses ALiBi: prefix tuning here supports the other schemes")
        P = check_int("n_prefix", n_prefix, 1)
        std = check_number("init_std", init_std, low=0.0)
        if generator is not None:
            check_type("generator", generator, torch.Generator, "a torch.Generator or None")
        self.attn, self.n_prefix = attn, P
        w = attn.q_proj.weight
        shape = (attn.n_kv_head, P, attn.d_head)
        self.prefix_k = nn.Parameter(torch.empty(shape, dtype=w.dtype, device=w.device))
        self.prefix_v = nn.Parameter(torch.empty(shape, dtype=w.dtype, device=w.device))
        with torch.no_grad():
            self.prefix_k.normal_(0.0, std, generator=generator)
            self.prefix_v.normal_(0.0, std, generator=generator)

    def _check_x(self, x: object) -> Tensor:  # Block.forward checks through its attention
        return self.attn._check_x(x)

    def forward(
        self,
        x: Tensor,
        kv_cache: KVCache | None = None,
        *,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The layer's attention of ``x`` ``(B, T, d_model)`` over the prefix and ``x``;
        ``positions`` and ``mask`` (over the tokens, ``(…, T, T)``) as in
        :meth:`llmbook.gpt.CausalSelfAttention.forward`."""
        x = self.attn._check_x(x)
        if kv_cache is not None:
            raise ValueError(
                "kv_cache must be None: a prefix-tuned layer runs without a cache "
                "(GPT.generate(..., use_cache=False))"
            )
        B, T, _ = x.shape
        P, H = self.n_prefix, self.attn.n_head
        if positions is None:
            positions = torch.arange(T, device=x.device)
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be a bool tensor (True = may attend), got {show(mask)}"
                )
            try:
                mask = mask.expand(B, H, T, T)
            except RuntimeError:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not broadcast to (B, n_head, T, T) "
                    f"= {(B, H, T, T)}"
                ) from None
            seen = torch.ones(B, H, T, P, dtype=torch.bool, device=mask.device)
            mask = torch.cat((seen, mask), dim=-1)
        cache = KVCache(P + T)
        cache.update(self.prefix_k.expand(B, -1, -1, -1), self.prefix_v.expand(B, -1, -1, -1))
        return self.attn(x, cache, positions=positions, mask=mask)


def prefix_parameter_count(
    n_layer: int, n_prefix: int, d_model: int, n_head: int = 1, n_kv_head: int | None = None
) -> int:
    r"""Parameters of prefix tuning: :math:`2LP\,n_{\text{kv\_head}}d_{\text{head}}`, which
    is :math:`2LPd_{\text{model}}` with multi-head attention (``n_kv_head`` None)."""
    L, P = check_int("n_layer", n_layer, 1), check_int("n_prefix", n_prefix, 1)
    d, H = check_int("d_model", d_model, 1), check_int("n_head", n_head, 1)
    if d % H:
        raise ValueError(f"n_head must divide d_model={d}, got {H}")
    H_kv = H if n_kv_head is None else check_int("n_kv_head", n_kv_head, 1, H)
    return 2 * L * P * H_kv * (d // H)


def inject_prefix(
    model: GPT, n_prefix: int, init_std: float = 0.02, generator: torch.Generator | None = None
) -> list[str]:
    """Wrap every block's attention of ``model`` in a :class:`PrefixAttention`, in place;
    return the names wrapped."""
    model = _check_gpt(model)
    P = check_int("n_prefix", n_prefix, 1)
    std = check_number("init_std", init_std, low=0.0)
    names = []
    for n, block in enumerate(model.blocks):
        if isinstance(block.attn, PrefixAttention):
            raise ValueError("model already has prefixes; inject them once")
        block.attn = PrefixAttention(block.attn, P, std, generator)
        names.append(f"blocks.{n}.attn")
    return names


# --------------------------------------------------------------------------- training
def mark_only_peft_trainable(model: nn.Module) -> int:
    """Freeze every parameter of ``model`` except LoRA's :math:`A, B`, adapters and prefixes;
    return the number left trainable (a model without any of them is refused)."""
    model = _check_model(model)
    keep: set[int] = set()
    for m in model.modules():
        if isinstance(m, LoRALinear):
            keep |= {id(m.lora_A), id(m.lora_B)}
        elif isinstance(m, Adapter):
            keep |= {id(p) for p in m.parameters()}
        elif isinstance(m, PrefixAttention):
            keep |= {id(m.prefix_k), id(m.prefix_v)}
    if not keep:
        raise ValueError("model has no LoRA, adapter or prefix parameters: inject them first")
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return count_trainable_parameters(model)


def count_trainable_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model`` with ``requires_grad`` (a shared one once)."""
    model = _check_model(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- memory
def finetune_memory_bytes(
    n_frozen: float,
    n_trainable: float,
    frozen_bits: float = 16.0,
    trainable_bytes: float = 2.0,
    grad_bytes: float = 2.0,
    optimizer_bytes: float = 8.0,
) -> dict[str, float]:
    r"""Memory of the weights, gradients and optimizer states of a fine-tune (Chapter 15):

    .. math::
        N_{frozen}\, b_{frozen}/8 + N_{train}\,(b_w + b_g + b_{opt}),

    activations excluded. Defaults: a 16-bit frozen base, bf16 trainable weights and
    gradients, Adam's two float32 moments (8 bytes). Full 16-bit fine-tuning of 65e9
    parameters: :math:`65\cdot10^9 \cdot 12` = 780 GB; QLoRA's base at
    :func:`llmbook.quant.bits_per_parameter` ``(4, 64, 32, 256, 8)`` bits is 33.5 GB.
    Returns the four parts and their ``"total"``, in bytes.
    """
    nf = check_number("n_frozen", n_frozen, low=0.0)
    nt = check_number("n_trainable", n_trainable, low=0.0)
    fb = check_number("frozen_bits", frozen_bits, low=0.0, strict=True)
    tb = check_number("trainable_bytes", trainable_bytes, low=0.0, strict=True)
    gb = check_number("grad_bytes", grad_bytes, low=0.0)
    ob = check_number("optimizer_bytes", optimizer_bytes, low=0.0)
    parts = {
        "frozen_weights": nf * fb / 8,
        "trainable_weights": nt * tb,
        "gradients": nt * gb,
        "optimizer": nt * ob,
    }
    parts["total"] = sum(parts.values())
    return parts


__all__ = [
    "ADAPTER_ACTIVATIONS",
    "Adapter",
    "LoRALinear",
    "NF4Linear",
    "PrefixAttention",
    "adapter_parameter_count",
    "count_trainable_parameters",
    "finetune_memory_bytes",
    "inject_adapters",
    "inject_lora",
    "inject_prefix",
    "inject_qlora",
    "lora_model_parameter_count",
    "lora_parameter_count",
    "mark_only_peft_trainable",
    "merge_lora",
    "prefix_parameter_count",
]
