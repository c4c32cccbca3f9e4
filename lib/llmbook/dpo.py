r"""Direct preference optimisation: training a policy on preference pairs (Chapter 17).

DPO (Rafailov et al. 2023) fits a policy :math:`\pi_\theta` to pairs of responses
:math:`(y_w, y_l)` to the same prompt, :math:`y_w` preferred, by minimising

.. math::

    \mathcal L_{\text{DPO}} = -\,\mathbb E\Big[\log\sigma\Big(\beta\log
    \frac{\pi_\theta(y_w\mid x)}{\pi_{\text{ref}}(y_w\mid x)}
    - \beta\log\frac{\pi_\theta(y_l\mid x)}{\pi_{\text{ref}}(y_l\mid x)}\Big)\Big]

(:func:`llmbook.alignment.dpo_loss`). Its minimiser on Bradley-Terry preferences from a
reward :math:`r` is the KL-regularised optimum :math:`\pi^* \propto \pi_{\text{ref}}
e^{r/\beta}` (:func:`llmbook.alignment.kl_regularised_optimum`). This module holds

* :func:`bandit_dpo_loss`: the exact expected DPO loss of a policy over a finite set of
  responses (a bandit), pairs drawn from :math:`\pi_{\text{ref}}` and labelled by the
  Bradley-Terry model of a known reward, so that its minimiser can be compared with
  :math:`\pi^*`;
* :func:`reference_logprobs` and :func:`dpo_train`: the training loop on
  :class:`llmbook.reward.Preferences` (the reference's log-probabilities computed once,
  before training: DPO samples nothing while it trains), recording the loss, the
  implicit-reward margin and accuracy, and the log-ratios of the chosen and rejected
  responses at every step (:class:`DPOHistory`);
* :func:`zoo_dpo`: the zoo's ``"dpo"`` task (``llmbook.zoo.DERIVED_TASKS``), DPO on
  preference pairs that the base model's own samples and the lexicon reward of
  :mod:`llmbook.reward` produce.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from llmbook._validate import (
    check_bool,
    check_choice,
    check_float_tensor,
    check_int,
    check_number,
    check_type,
)
from llmbook.alignment import dpo_loss, sequence_logprobs
from llmbook.gpt import GPT
from llmbook.reward import (
    PROMPT_TOKENS,
    RESPONSE_TOKENS,
    LexiconReward,
    Preferences,
    genre_lexicon,
    preference_pairs,
    task_prompts,
)
from llmbook.train import History, TrainConfig, _tqdm, configure_optimizer, lr_at

__all__ = [
    "DPOHistory",
    "bandit_dpo_loss",
    "dpo_train",
    "reference_logprobs",
    "zoo_dpo",
]


# ----------------------------------------------------------------------------- the bandit
def _bandit_inputs(
    logits: object, ref_probs: object, rewards: object
) -> tuple[Tensor, Tensor, Tensor]:
    logits = check_float_tensor("logits", logits, ndim=1, shape="(K,)", finite=True)
    rewards = check_float_tensor("rewards", rewards, ndim=1, shape="(K,)", finite=True)
    if logits.shape != rewards.shape or logits.shape[0] < 2:
        raise ValueError(
            f"logits and rewards must have one shape (K,) with K >= 2 responses, got "
            f"{tuple(logits.shape)} and {tuple(rewards.shape)}"
        )
    ref = check_float_tensor("ref_probs", ref_probs, ndim=1, shape="(K,)", finite=True)
    if ref.shape != rewards.shape:
        raise ValueError(
            f"ref_probs must have the shape {tuple(rewards.shape)} of rewards, got "
            f"{tuple(ref.shape)}"
        )
    if bool((ref <= 0).any()) or abs(float(ref.double().sum()) - 1.0) > 1e-6:
        raise ValueError("ref_probs must be probabilities > 0 summing to 1 (log pi_ref is needed)")
    return logits, ref.to(logits.dtype), rewards.to(logits.dtype)


def bandit_dpo_loss(
    logits: Tensor,
    ref_probs: Tensor,
    rewards: Tensor,
    beta: float,
    *,
    noise: float = 1.0,
    loss_type: str = "sigmoid",
) -> Tensor:
    r"""The exact expected DPO loss of the policy :math:`\pi = \operatorname{softmax}(z)`
    over K responses (a bandit), Chapter 17.

    Pairs of distinct responses :math:`(y, y')` are drawn from
    :math:`\pi_{\text{ref}}\otimes\pi_{\text{ref}}` and labelled by the Bradley-Terry model of
    the reward with temperature :math:`\tau` (``noise``):

    .. math::
       \begin{aligned}
       \mathcal L(z) = \sum_{y \ne y'} &\frac{2\,\pi_{\text{ref}}(y)\pi_{\text{ref}}(y')}{M}\,
       \sigma\Big(\frac{r(y) - r(y')}{\tau}\Big) \\
       &\times \ell\big(\log\pi(y) - \log\pi(y'),\
       \log\pi_{\text{ref}}(y) - \log\pi_{\text{ref}}(y')\big),
       \end{aligned}

    summed over ordered pairs (each unordered pair appears twice, once per label), with
    :math:`M = 1 - \sum_y \pi_{\text{ref}}(y)^2` and :math:`\ell` the per-pair
    :func:`llmbook.alignment.dpo_loss` (the pair :math:`(y, y')` with :math:`y` chosen). With
    the sigmoid loss its minimiser is :math:`\pi^* \propto \pi_{\text{ref}}
    e^{r/(\tau\beta)}`. ``noise=0`` gives deterministic labels (the higher reward always
    wins; ties are not compared), for which the sigmoid loss has no minimiser.

    Parameters
    ----------
    logits : Tensor
        (K,) the policy's logits :math:`z` (any float dtype; gradients flow).
    ref_probs : Tensor
        (K,) the reference policy, > 0, summing to 1.
    rewards : Tensor
        (K,) the reward of each response.
    beta : float
        DPO's :math:`\beta` > 0.
    noise : float
        The Bradley-Terry temperature :math:`\tau \ge 0` of the labels.
    loss_type : str
        ``"sigmoid"`` (DPO), ``"ipo"`` or ``"hinge"``.
    """
    z, ref, r = _bandit_inputs(logits, ref_probs, rewards)
    noise = check_number("noise", noise, low=0.0)
    logp, lref = torch.log_softmax(z, -1), torch.log(ref)
    K = z.shape[0]
    i, j = (t.flatten() for t in torch.meshgrid(torch.arange(K), torch.arange(K), indexing="ij"))
    keep = i != j
    i, j = i[keep], j[keep]  # ordered pairs (y chosen, y' rejected)
    if noise == 0.0:
        p_label = (r[i] > r[j]).to(z.dtype)
    else:
        p_label = torch.sigmoid((r[i] - r[j]) / noise)
    weight = 2 * ref[i] * ref[j] / (1 - (ref**2).sum())  # P(pair) of an unordered pair
    losses = dpo_loss(logp[i], logp[j], lref[i], lref[j], beta, loss_type, reduction="none")
    return (weight * p_label * losses).sum()


# ------------------------------------------------------------------------ training a GPT
@dataclass
class DPOHistory:
    r"""What :func:`dpo_train` measured at each step, as plain lists (Chapter 17).

    ``steps[i]`` counts the optimizer steps done; aligned with it: ``losses`` (the batch's
    DPO loss), ``margins`` (mean implicit-reward margin :math:`\beta h`, see
    :func:`llmbook.alignment.implicit_rewards`), ``accuracies`` (fraction of pairs with
    :math:`h > 0`), ``chosen_logratios`` and ``rejected_logratios`` (mean
    :math:`\log\pi_\theta(y)/\pi_{\text{ref}}(y)` of the batch's chosen and rejected
    responses, nats; negative means the policy finds them less likely than the reference
    did), ``lrs`` and ``elapsed`` (cumulative seconds).
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    chosen_logratios: list[float] = field(default_factory=list)
    rejected_logratios: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), list):
                raise ValueError(f"{f.name} must be a list, got {type(getattr(self, f.name))}")

    def to_dict(self) -> dict[str, list[Any]]:
        """The lists by name (JSON-ready)."""
        return dataclasses.asdict(self)


def _pair_batch(prefs: object) -> Preferences:
    prefs = check_type("prefs", prefs, Preferences, "an llmbook.reward.Preferences")
    if len(prefs) == 0:
        raise ValueError("prefs must hold at least one pair, got none")
    return prefs


def reference_logprobs(
    reference: GPT, prefs: Preferences, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    r""":math:`\log\pi_{\text{ref}}(y_w\mid x)` and :math:`\log\pi_{\text{ref}}(y_l\mid x)` of
    every pair, two float32 (N,) tensors, in batches of ``batch_size`` without gradients
    (Chapter 17). DPO needs them once, before training (``trl``'s
    ``precompute_ref_log_probs``)."""
    check_type("reference", reference, GPT, "an llmbook.gpt.GPT")
    prefs = _pair_batch(prefs)
    batch_size = check_int("batch_size", batch_size, 1)
    was_training = reference.training
    reference.eval()
    out = []
    with torch.no_grad():
        for ids in (prefs.chosen, prefs.rejected):
            parts = []
            for s in range(0, len(ids), batch_size):
                x, m = ids[s : s + batch_size], prefs.response_mask[s : s + batch_size]
                parts.append(sequence_logprobs(reference(x)[0].float(), x, m))
            out.append(torch.cat(parts))
    reference.train(was_training)
    return out[0], out[1]


def dpo_train(
    policy: GPT,
    reference: GPT,
    prefs: Preferences,
    cfg: TrainConfig,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    progress: bool = False,
) -> DPOHistory:
    r"""Train ``policy`` in place with the DPO loss on ``prefs`` (Chapter 17).

    The reference's log-probabilities are computed once (:func:`reference_logprobs`); then
    each of ``cfg.max_steps`` steps takes ``cfg.batch_size`` pairs (epochs of a random
    order from a generator seeded with ``cfg.seed``), runs the chosen and rejected
    responses through the policy in one batch, and takes an AdamW step
    (:func:`llmbook.train.configure_optimizer`, learning rate :func:`llmbook.train.lr_at`:
    set ``cfg.min_lr = cfg.lr`` for a constant rate after warmup) on

    .. math:: \mathcal L = \operatorname{mean}\ \ell_{\text{DPO}}\big(\log\pi_\theta(y_w),
       \log\pi_\theta(y_l), \log\pi_{\text{ref}}(y_w), \log\pi_{\text{ref}}(y_l)\big)

    (:func:`llmbook.alignment.dpo_loss` with ``beta``, ``loss_type``,
    ``label_smoothing``), the gradient clipped to ``cfg.grad_clip``. Training is in
    float32 (``cfg.precision`` must be ``"fp32"``); the policy is left in eval mode.
    Nothing is sampled: the pairs are fixed, offline data.

    Returns
    -------
    DPOHistory
        The loss, implicit-reward margin and accuracy, and mean log-ratios per step.
    """
    check_type("policy", policy, GPT, "an llmbook.gpt.GPT")
    check_type("reference", reference, GPT, "an llmbook.gpt.GPT")
    if policy is reference:
        raise ValueError("policy and reference must be different models (copy the reference)")
    if policy.config.vocab_size != reference.config.vocab_size:
        raise ValueError("reference must have the policy's vocabulary (vocab_size differs)")
    prefs = _pair_batch(prefs)
    check_type("cfg", cfg, TrainConfig, "a TrainConfig")
    if cfg.precision != "fp32":
        raise ValueError(f"cfg.precision must be 'fp32' for DPO, got {cfg.precision!r}")
    beta = check_number("beta", beta, low=0.0, strict=True)
    loss_type = check_choice("loss_type", loss_type, ("sigmoid", "ipo", "hinge"))
    check_number("label_smoothing", label_smoothing, low=0.0, high=0.5, high_strict=True)
    progress = check_bool("progress", progress)
    if prefs.chosen.shape[1] > policy.config.block_size:
        raise ValueError(
            f"prefs sequences must fit the context: {prefs.chosen.shape[1]} tokens > "
            f"block_size {policy.config.block_size}"
        )
    ref_c, ref_r = reference_logprobs(reference, prefs)
    average = loss_type == "ipo"  # trl's IPO compares per-token means
    if average:
        n_tok = prefs.response_mask[:, 1:].sum(-1)
        ref_c, ref_r = ref_c / n_tok, ref_r / n_tok
    opt = configure_optimizer(policy, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    order, pos = torch.randperm(len(prefs), generator=gen), 0
    hist, elapsed = DPOHistory(), 0.0
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    bar = _tqdm()(total=cfg.max_steps, desc="DPO", unit="step", disable=quiet or not progress)
    policy.train()
    for step in range(cfg.max_steps):
        t0 = time.perf_counter()
        idx = []
        while len(idx) < min(cfg.batch_size, len(prefs)):
            if pos == len(order):
                order, pos = torch.randperm(len(prefs), generator=gen), 0
            idx.append(int(order[pos]))
            pos += 1
        b = torch.tensor(idx, device=prefs.chosen.device)
        ids = torch.cat([prefs.chosen[b], prefs.rejected[b]])
        mask = torch.cat([prefs.response_mask[b]] * 2)
        logps = sequence_logprobs(policy(ids)[0], ids, mask, average=average)
        pc, pr = logps[: len(b)], logps[len(b) :]
        loss = dpo_loss(pc, pr, ref_c[b], ref_r[b], beta, loss_type, label_smoothing)
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the DPO loss is {loss.item()}; try a smaller lr")
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        elapsed += time.perf_counter() - t0
        with torch.no_grad():
            lc, lrj = (pc - ref_c[b]).detach(), (pr - ref_r[b]).detach()
            h = lc - lrj
        hist.steps.append(step + 1)
        hist.losses.append(loss.item())
        hist.margins.append(beta * h.mean().item())
        hist.accuracies.append((h > 0).double().mean().item())
        hist.chosen_logratios.append(lc.mean().item())
        hist.rejected_logratios.append(lrj.mean().item())
        hist.lrs.append(lr)
        hist.elapsed.append(elapsed)
        bar.update(1)
    bar.close()
    policy.eval()
    return hist


# ----------------------------------------------------------------------------- the zoo
def zoo_dpo(
    recipe: Any, base: Any, device: torch.device, progress: bool
) -> tuple[GPT, History, dict[str, Any]]:
    """The zoo's ``"dpo"`` task (``llmbook.zoo.DERIVED_TASKS``, Chapter 17).

    Preference pairs: ``task_args["n_prompts"]`` prompts of the training split
    (:func:`llmbook.reward.task_prompts`, ``PROMPT_TOKENS`` long, seed
    ``task_args.get("data_seed", 0)``), two responses of ``RESPONSE_TOKENS`` each sampled
    from the base model, labelled by the lexicon reward with Bradley-Terry temperature
    ``task_args.get("noise", 0.0)`` (:func:`llmbook.reward.preference_pairs`). Then
    :func:`dpo_train` from a copy of the base with ``beta = task_args["beta"]`` and the
    recipe's :class:`~llmbook.train.TrainConfig`. Returns the policy, a
    :class:`~llmbook.train.History` (``train_losses`` are the DPO losses) and the curves of
    :class:`DPOHistory` as metrics, with the number of pairs.
    """
    args = dict(recipe.task_args)
    beta = check_number("task_args['beta']", args.get("beta"), low=0.0, strict=True)
    n_prompts = check_int("task_args['n_prompts']", args.get("n_prompts"), 1)
    noise = check_number("task_args['noise']", args.get("noise", 0.0), low=0.0)
    data_seed = check_int("task_args['data_seed']", args.get("data_seed", 0), 0)
    loss_type = check_choice(
        "task_args['loss_type']", args.get("loss_type", "sigmoid"), ("sigmoid", "ipo", "hinge")
    )
    unknown = sorted(set(args) - {"beta", "n_prompts", "noise", "data_seed", "loss_type"})
    if unknown:
        raise ValueError(f"task_args has unknown keys {unknown}")
    reference = copy.deepcopy(base.model).to(device).float().eval()
    policy = copy.deepcopy(reference)
    tok = base.tokenizer
    prompts = task_prompts(tok, n_prompts, PROMPT_TOKENS, split="train", seed=data_seed)
    reward = LexiconReward(genre_lexicon())
    t0 = time.perf_counter()
    prefs = preference_pairs(
        reference, tok, reward, prompts.to(device), RESPONSE_TOKENS, noise=noise, seed=data_seed
    )
    pair_seconds = time.perf_counter() - t0
    cfg = recipe.train_config()
    hist = dpo_train(
        policy, reference, prefs, cfg, beta=beta, loss_type=loss_type, progress=progress
    )
    history = History(
        steps=list(hist.steps),
        lrs=list(hist.lrs),
        train_losses=list(hist.losses),
        elapsed=list(hist.elapsed),
        precision="fp32",
    )
    metrics = {
        **{f"dpo_{k}": v for k, v in hist.to_dict().items() if k not in ("steps", "lrs")},
        "n_pairs": len(prefs),
        "pair_seconds": pair_seconds,
        "train_loss": hist.losses[-1],
        "train_seconds": hist.elapsed[-1],
        "seconds_per_step": hist.elapsed[-1] / len(hist.elapsed),
    }
    return policy.float(), history, metrics
