r"""Model compression: knowledge distillation and pruning (Chapter 15).

* **Distillation** (Hinton et al. 2015): a student with logits :math:`s` learns from a
  teacher's logits :math:`t` softened by a temperature :math:`\tau`,

  .. math::
      \mathcal L = \alpha\,\mathrm{CE}(y, s) + (1-\alpha)\,\tau^2\,
      \mathrm{KL}\big(\operatorname{softmax}(t/\tau)\,\big\|\,\operatorname{softmax}(s/\tau)\big),

  averaged over the scored positions (:func:`distillation_loss`). The factor
  :math:`\tau^2` keeps the soft term's gradient, which shrinks as :math:`1/\tau^2`, on the
  scale of the hard one's.
* **Unstructured magnitude pruning**: zero the fraction ``sparsity`` of weights with the
  smallest :math:`|w|`, per matrix or with one threshold for all (:func:`magnitude_mask`,
  :func:`magnitude_prune`; equal to ``torch.nn.utils.prune``'s ``l1_unstructured`` and
  ``global_unstructured``); :func:`weight_sparsity` measures the zeros.
* **Structured pruning**: remove whole attention heads (:func:`prune_heads`) or
  feed-forward neurons (:func:`prune_neurons`), by zeroing their rows and columns; the
  result computes what smaller dense matrices would (tested), which is what makes
  structured sparsity fast on ordinary hardware.
"""

from __future__ import annotations

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
from llmbook.gpt import GPT
from llmbook.peft import _check_targets

#: The linear layers of a block that pruning touches by default (all of them).
BLOCK_LINEARS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "up", "proj")


# --------------------------------------------------------------------------- distillation
def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = -100,
) -> Tensor:
    r"""Hinton et al.'s distillation loss, averaged over the scored positions:

    .. math::
        \alpha\,\mathrm{CE}(y, s) + (1-\alpha)\,\tau^2\,
        \mathrm{KL}\big(\operatorname{softmax}(t/\tau)\,\|\,\operatorname{softmax}(s/\tau)\big).

    ``student_logits`` and ``teacher_logits`` are ``(..., V)``, ``labels`` the integer
    targets ``(...)``; positions whose label is ``ignore_index`` count in neither term.
    ``alpha = 1`` is plain cross-entropy, ``alpha = 0`` pure soft targets. The teacher
    gets no gradient. Equals ``F.cross_entropy`` plus :math:`\tau^2` times
    ``F.kl_div(..., reduction="batchmean")`` on the scored rows (tested).
    """
    s = check_float_tensor("student_logits", student_logits, shape="(..., V)")
    t = check_float_tensor("teacher_logits", teacher_logits, shape="(..., V)")
    if s.ndim == 0 or s.shape != t.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape (..., V), got "
            f"{tuple(s.shape)} and {tuple(t.shape)}"
        )
    ok = isinstance(labels, Tensor) and not labels.is_floating_point()
    if not ok or labels.dtype == torch.bool or tuple(labels.shape) != tuple(s.shape[:-1]):
        raise ValueError(
            f"labels must be an integer tensor of shape {tuple(s.shape[:-1])} (the logits' "
            f"without V), got {show(labels)}"
        )
    tau = check_number("temperature", temperature, low=0.0, strict=True)
    a = check_number("alpha", alpha, low=0.0, high=1.0)
    ignore = check_int("ignore_index", ignore_index)
    y = labels.reshape(-1).long()
    keep = y != ignore
    if not bool(keep.any()):
        raise ValueError("labels has no scored position: every label is ignore_index")
    V = s.shape[-1]
    if int(y[keep].min()) < 0 or int(y[keep].max()) >= V:
        raise ValueError(f"labels must be ids in 0..{V - 1} or ignore_index={ignore}")
    s, t, y = s.reshape(-1, V)[keep], t.detach().reshape(-1, V)[keep], y[keep]
    hard = F.cross_entropy(s, y)
    log_p_s = F.log_softmax(s / tau, dim=-1)
    log_p_t = F.log_softmax(t / tau, dim=-1)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return a * hard + (1 - a) * tau**2 * soft


# --------------------------------------------------------------------------- unstructured
def _check_sparsity(sparsity: object) -> float:
    return check_number("sparsity", sparsity, low=0.0, high=1.0)


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    r"""The mask (True = keep) that zeros the ``round(sparsity * n)`` entries of ``weight``
    with the smallest :math:`|w|` (``torch.nn.utils.prune.l1_unstructured``'s rule)."""
    w = check_float_tensor("weight", weight)
    k = round(_check_sparsity(sparsity) * w.numel())
    mask = torch.ones(w.shape, dtype=torch.bool, device=w.device)
    if k:
        mask.view(-1)[torch.topk(w.detach().abs().reshape(-1), k, largest=False).indices] = False
    return mask


def _targeted(model: object, target_modules: object) -> list[tuple[str, nn.Linear]]:
    model = check_type("model", model, nn.Module, "a torch.nn.Module")
    targets = _check_targets(target_modules)
    layers = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)
    ]
    if not layers:
        raise ValueError(f"target_modules {targets} match no nn.Linear of the model")
    return layers


def weight_sparsity(model: nn.Module, target_modules: Sequence[str] = BLOCK_LINEARS) -> float:
    """The fraction of exactly-zero weights over the targeted ``nn.Linear`` layers (name
    equal to a pattern or ending in ``"." + pattern``); biases are not counted."""
    layers = _targeted(model, target_modules)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / sum(m.weight.numel() for _, m in layers)


def magnitude_prune(
    model: nn.Module,
    sparsity: float,
    target_modules: Sequence[str] = BLOCK_LINEARS,
    scope: str = "layer",
) -> float:
    r"""Zero the smallest-magnitude weights of the targeted ``nn.Linear`` layers in place:
    a fraction ``sparsity`` of each matrix (``scope="layer"``, as ``l1_unstructured``) or
    of all of them together, one threshold for all (``"global"``, as
    ``global_unstructured``). Returns :func:`weight_sparsity` afterwards."""
    layers = _targeted(model, target_modules)
    p = _check_sparsity(sparsity)
    scope = check_choice("scope", scope, ("layer", "global"))
    with torch.no_grad():
        if scope == "layer":
            for _, m in layers:
                m.weight.mul_(magnitude_mask(m.weight, p))
        else:
            flat = torch.cat([m.weight.reshape(-1) for _, m in layers])
            keep = magnitude_mask(flat, p)
            for _, m in layers:
                n = m.weight.numel()
                m.weight.mul_(keep[:n].view_as(m.weight))
                keep = keep[n:]
    return weight_sparsity(model, target_modules)


# --------------------------------------------------------------------------- structured
def _check_gpt(model: object) -> GPT:
    return check_type("model", model, GPT, "a llmbook.gpt.GPT")


def prune_heads(model: GPT, heads: Sequence[tuple[int, int]]) -> int:
    r"""Remove attention heads in place: for each ``(layer, head)``, zero the head's rows of
    :math:`W_Q` and its columns of the output projection (and its rows of :math:`W_K, W_V`
    when every head has its own), so the head adds nothing to the residual stream.
    Returns the number of weights zeroed."""
    model = _check_gpt(model)
    cfg = model.config
    ok = isinstance(heads, Sequence) and not isinstance(heads, str)
    pairs = list(heads) if ok else []  # type: ignore[arg-type]
    for pair in pairs if ok else [None]:
        good = (
            isinstance(pair, tuple | list)
            and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            and 0 <= pair[0] < cfg.n_layer
            and 0 <= pair[1] < cfg.n_head
        )
        if not good:
            raise ValueError(
                f"heads must be a sequence of (layer, head) pairs with layer in "
                f"0..{cfg.n_layer - 1} and head in 0..{cfg.n_head - 1}, got {show(heads)}"
            )
    d, own_kv = cfg.d_head, cfg.n_kv_head == cfg.n_head
    zeroed = 0
    with torch.no_grad():
        for layer, h in sorted(set(map(tuple, pairs))):
            attn = model.blocks[layer].attn
            rows = slice(h * d, (h + 1) * d)
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj) if own_kv else (attn.q_proj,):
                lin.weight[rows] = 0
                if lin.bias is not None:
                    lin.bias[rows] = 0
                zeroed += lin.weight[rows].numel()
            attn.out_proj.weight[:, rows] = 0
            zeroed += attn.out_proj.weight[:, rows].numel()
    return zeroed


def neuron_scores(model: GPT) -> Tensor:
    r"""The magnitude score of each feed-forward neuron :math:`j` of each layer,
    :math:`\lVert W_1[:, j]\rVert_2\,\lVert W_2[j, :]\rVert_2` (its input and output weights;
    for SwiGLU the gate's and up-projection's input norms are added), ``(L, d_ff)``."""
    model = _check_gpt(model)
    out = []
    for block in model.blocks:
        w_in = block.mlp.fc.weight.detach().norm(dim=1)
        if block.mlp.up is not None:
            w_in = w_in + block.mlp.up.weight.detach().norm(dim=1)
        out.append(w_in * block.mlp.proj.weight.detach().norm(dim=0))
    return torch.stack(out)


def prune_neurons(model: GPT, fraction: float) -> list[Tensor]:
    r"""Remove the fraction ``fraction`` of feed-forward neurons with the lowest
    :func:`neuron_scores` in every layer, in place (zero their input rows, biases and output
    columns). Returns, per layer, the sorted indices of the neurons kept: the layer then
    computes exactly what an FFN of only those rows and columns would."""
    model = _check_gpt(model)
    p = check_number("fraction", fraction, low=0.0, high=1.0)
    scores = neuron_scores(model)
    n_drop = round(p * scores.shape[1])
    kept = []
    with torch.no_grad():
        for block, s in zip(model.blocks, scores, strict=True):
            order = torch.argsort(s)
            drop, keep = order[:n_drop], order[n_drop:].sort().values
            for lin in (block.mlp.fc, block.mlp.up):
                if lin is not None:
                    lin.weight[drop] = 0
                    if lin.bias is not None:
                        lin.bias[drop] = 0
            block.mlp.proj.weight[:, drop] = 0
            kept.append(keep)
    return kept


__all__ = [
    "BLOCK_LINEARS",
    "distillation_loss",
    "magnitude_mask",
    "magnitude_prune",
    "neuron_scores",
    "prune_heads",
    "prune_neurons",
    "weight_sparsity",
]
