r"""Reinforcement learning from human feedback on the book's task (Chapter 16).

The losses live in :mod:`llmbook.alignment` and the task (the comedy lexicon reward, the
prompts, sampling and evaluation) in :mod:`llmbook.reward`; this module runs them:

* a **reward model** fitted to preferences with the Bradley-Terry loss:
  :func:`word_frequencies` (the features: each lexicon word's share of a text's words,
  in which the task's reward is exactly linear) and :func:`fit_bradley_terry` (a linear
  reward :math:`r_\theta(y) = f(y)\,\theta` fitted by maximum likelihood);
* **PPO** (Schulman et al. 2017) with a per-token KL penalty (Ziegler et al. 2019):
  :func:`ppo_rollout` samples responses and computes log-probabilities, rewards, values
  and GAE advantages; :func:`ppo_update` takes the clipped policy and value steps;
  :func:`train_ppo` alternates them. The value model is a :class:`ValueHead`, a small MLP
  on the frozen *reference* model's last hidden states (:func:`hidden_states`): the
  reference's forward pass is paid anyway for the KL penalty, so the value costs one MLP;
* **GRPO** (Shao et al. 2024): :func:`train_grpo` replaces the value model by the mean
  reward of G responses to the same prompt (:func:`llmbook.alignment.group_advantages`);
* the **critique-and-revise** loop of Constitutional AI (Bai et al. 2022) with a
  rule-based critic: :class:`Rule`, :func:`banned_words_rule`, :func:`repetition_rule`,
  :func:`critique`, :func:`critique_and_revise`;
* the zoo trainers :func:`zoo_ppo` and :func:`zoo_grpo` (``llmbook.zoo.DERIVED_TASKS``).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_float_tensor,
    check_int,
    check_number,
    check_type,
    show,
)
from llmbook.alignment import (
    AdaptiveKLController,
    bradley_terry_loss,
    gae,
    group_advantages,
    grpo_loss,
    kl_penalised_rewards,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_logprobs,
)
from llmbook.gpt import GPT
from llmbook.reward import (
    PROMPT_TOKENS,
    LexiconReward,
    genre_lexicon,
    sample_responses,
    task_prompts,
)
from llmbook.tokenizer import BPETokenizer

__all__ = [
    "GRPOConfig",
    "PPOConfig",
    "Rollout",
    "Rule",
    "ValueHead",
    "Violation",
    "banned_words_rule",
    "critique",
    "critique_and_revise",
    "fit_bradley_terry",
    "hidden_states",
    "ppo_rollout",
    "ppo_update",
    "repetition_rule",
    "train_grpo",
    "train_ppo",
    "word_frequencies",
    "zoo_grpo",
    "zoo_ppo",
]

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")  # the words of llmbook.reward.words


# ------------------------------------------------------------------------ reward model
def word_frequencies(texts: Sequence[str], vocabulary: Sequence[str]) -> Tensor:
    r"""Each vocabulary word's share of each text's words, ``(len(texts), len(vocabulary))``
    float64.

    .. math:: f_w(y) = \frac{\#\{i : w_i = w\}}{\max(1, n_y)}

    with :math:`n_y` the number of words of :math:`y` (:func:`llmbook.reward.words`). The
    lexicon reward is linear in these features, :math:`r(y) = f(y) \cdot s`.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence) or not vocabulary:
        raise ValueError(f"vocabulary must be a non-empty list of words, got {show(vocabulary)}")
    index = {w: j for j, w in enumerate(vocabulary)}
    if len(index) != len(vocabulary):
        raise ValueError("vocabulary must not repeat a word")
    out = torch.zeros(len(texts), len(vocabulary), dtype=torch.float64)
    for i, text in enumerate(texts):
        check_type("texts[i]", text, str, "a str")
        ws = [w.lower() for w in _WORD.findall(text)]
        for w in ws:
            if w in index:
                out[i, index[w]] += 1.0
        out[i] /= max(1, len(ws))
    return out


def fit_bradley_terry(
    features_chosen: Tensor,
    features_rejected: Tensor,
    *,
    l2: float = 1e-4,
    max_iter: int = 200,
) -> Tensor:
    r"""A linear reward model :math:`r_\theta(y) = f(y)\,\theta` fitted to preferences by
    maximum likelihood under the Bradley-Terry model, with a small ridge penalty.

    .. math:: \hat\theta = \arg\min_\theta\; -\frac1N\sum_{i=1}^N
       \log\sigma\big((f(y_w^i) - f(y_l^i))\,\theta\big) + \frac{\lambda}{2}\|\theta\|^2

    (:func:`llmbook.alignment.bradley_terry_loss`), a convex problem solved by L-BFGS in
    float64. The ridge :math:`\lambda` = ``l2`` keeps :math:`\hat\theta` finite when the
    pairs are separable and sets unseen words to 0. Returns :math:`\hat\theta`, one weight
    per feature.
    """
    c = check_float_tensor("features_chosen", features_chosen, ndim=2, shape="(N, |W|)")
    r = check_float_tensor("features_rejected", features_rejected, ndim=2, shape="(N, |W|)")
    if c.shape != r.shape or c.shape[0] == 0:
        raise ValueError(
            f"features_chosen and features_rejected must have one non-empty shape, got "
            f"{tuple(c.shape)} and {tuple(r.shape)}"
        )
    l2 = check_number("l2", l2, low=0.0, strict=True)
    max_iter = check_int("max_iter", max_iter, 1)
    diff = (c - r).double()
    theta = torch.zeros(diff.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = bradley_terry_loss(diff @ theta, torch.zeros_like(diff[:, 0]))
        loss = loss + 0.5 * l2 * theta.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach()


# ---------------------------------------------------------------------- policy helpers
def hidden_states(model: GPT, ids: Tensor) -> tuple[Tensor, Tensor]:
    """The logits (B, T, V) and the last hidden states (B, T, d_model) of ``model`` on
    ``ids`` (the output of its final norm, what the LM head reads), in one forward pass."""
    check_type("model", model, GPT, "an llmbook.gpt.GPT")
    store: dict[str, Tensor] = {}
    handle = model.ln_f.register_forward_hook(lambda m, i, o: store.__setitem__("h", o))
    try:
        logits = model(ids)[0]
    finally:
        handle.remove()
    return logits, store["h"]


class ValueHead(nn.Module):
    r"""The value model :math:`V_t`: a two-layer MLP on hidden states, (B, n, d) -> (B, n).

    Its last layer starts at zero, so :math:`V_t = 0` before training (GAE then starts as
    the plain return). Used on the frozen reference model's features (Chapter 16).

    Parameters
    ----------
    d_model : int
        Width of the features.
    hidden : int
        Width of the hidden layer.
    """

    def __init__(self, d_model: int, hidden: int = 64) -> None:
        super().__init__()
        d_model, hidden = check_int("d_model", d_model, 1), check_int("hidden", hidden, 1)
        self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, features: Tensor) -> Tensor:
        """Values (B, n) of features (B, n, d_model)."""
        d = self.net[0].in_features
        if not isinstance(features, Tensor) or features.ndim != 3 or features.shape[-1] != d:
            raise ValueError(f"features must be a (B, n, {d}) tensor, got {show(features)}")
        return self.net(features).squeeze(-1)


def _decode_responses(tokenizer: BPETokenizer, ids: Tensor, n_prompt: int) -> list[str]:
    return [tokenizer.decode(row[n_prompt:].tolist()) for row in ids.cpu()]


def _check_models(policy: object, reference: object) -> None:
    check_type("policy", policy, GPT, "an llmbook.gpt.GPT")
    check_type("reference", reference, GPT, "an llmbook.gpt.GPT")
    if policy.config.vocab_size != reference.config.vocab_size:  # type: ignore[union-attr]
        raise ValueError("reference must have the policy's vocabulary (vocab_size differs)")


def _check_prompts(prompts: object, model: GPT, n_new: int) -> Tensor:
    if not isinstance(prompts, Tensor) or prompts.ndim != 2 or prompts.dtype != torch.int64:
        raise ValueError(f"prompts must be a (B, P) int64 tensor, got {show(prompts)}")
    if prompts.shape[0] < 1 or prompts.shape[1] < 1:
        raise ValueError(f"prompts must have B >= 1 rows of P >= 1 tokens, got {prompts.shape}")
    if prompts.shape[1] + n_new > model.config.block_size:
        raise ValueError(
            f"prompts of {prompts.shape[1]} tokens and n_new={n_new} must fit the context "
            f"block_size={model.config.block_size}"
        )
    return prompts


# ------------------------------------------------------------------------------- PPO
@dataclass(frozen=True)
class PPOConfig:
    """PPO's hyperparameters (Chapter 16).

    ``iterations`` rollouts of ``batch_size`` responses of ``n_new`` tokens; each rollout
    is used for ``epochs`` passes in ``minibatches`` minibatches. ``beta`` is the KL
    coefficient (with ``kl_target``, the start of
    :class:`~llmbook.alignment.AdaptiveKLController` with horizon ``kl_horizon``),
    ``clip_eps`` the policy's trust region, ``value_clip`` the value's, ``gamma`` and
    ``lam`` those of GAE, ``lr`` and ``value_lr`` Adam's step sizes, ``grad_clip`` the
    policy's gradient-norm limit.
    """

    iterations: int = 60
    batch_size: int = 64
    n_new: int = 24
    epochs: int = 2
    minibatches: int = 2
    beta: float = 0.05
    kl_target: float | None = None
    kl_horizon: float = 10_000.0
    clip_eps: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    lr: float = 1e-4
    value_lr: float = 1e-3
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "n_new", "epochs", "minibatches"):
            check_int(name, getattr(self, name), 1)
        if self.minibatches > self.batch_size:
            raise ValueError(
                f"minibatches must be at most batch_size={self.batch_size}, got {self.minibatches}"
            )
        check_number("beta", self.beta, low=0.0)
        if self.kl_target is not None:
            check_number("kl_target", self.kl_target, low=0.0, strict=True)
            check_number("beta", self.beta, low=0.0, strict=True)
        check_number("kl_horizon", self.kl_horizon, low=0.0, strict=True)
        check_number("clip_eps", self.clip_eps, low=0.0, high=1.0, strict=True, high_strict=True)
        check_number("value_clip", self.value_clip, low=0.0, strict=True)
        check_number("gamma", self.gamma, low=0.0, high=1.0)
        check_number("lam", self.lam, low=0.0, high=1.0)
        for name in ("lr", "value_lr", "grad_clip"):
            check_number(name, getattr(self, name), low=0.0, strict=True)


@dataclass
class Rollout:
    """One PPO rollout: ``ids``/``mask`` (B, T) are prompt + response and its response
    mask; the per-token tensors (B, T - 1) follow :func:`llmbook.alignment.token_logprobs`'s
    shift (column t is token t + 1; mask ``mask[:, 1:]``): the sampling policy's and the
    reference's log-probabilities, the values, the KL-penalised rewards, GAE's advantages
    and returns; ``features`` (B, T - 1, d_model) are the reference's hidden states the
    values read; ``scores`` (B,) the task's rewards of the decoded ``texts``."""

    ids: Tensor
    mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    features: Tensor
    values: Tensor
    scores: Tensor
    rewards: Tensor
    advantages: Tensor
    returns: Tensor
    texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for f in fields(self)[:-1]:
            check_type(f.name, getattr(self, f.name), Tensor, "a tensor")
        B, T = self.ids.shape if self.ids.ndim == 2 else (0, 0)
        if B < 1 or T < 2 or self.mask.shape != self.ids.shape:
            raise ValueError(
                f"ids and mask must be (B, T) with T >= 2, got {tuple(self.ids.shape)} and "
                f"{tuple(self.mask.shape)}"
            )
        for name in ("logprobs", "ref_logprobs", "values", "rewards", "advantages", "returns"):
            if tuple(getattr(self, name).shape) != (B, T - 1):
                raise ValueError(
                    f"{name} must have shape (B, T - 1) = {(B, T - 1)}, got "
                    f"{tuple(getattr(self, name).shape)}"
                )
        if tuple(self.features.shape[:2]) != (B, T - 1) or tuple(self.scores.shape) != (B,):
            raise ValueError(
                f"features must be (B, T - 1, d) and scores (B,) with B={B}, T={T}, got "
                f"{tuple(self.features.shape)} and {tuple(self.scores.shape)}"
            )

    @property
    def kl(self) -> Tensor:
        r"""Per-response KL estimate :math:`\sum_t \log\pi - \log\pi_{\text{ref}}`, (B,)."""
        return (self.logprobs - self.ref_logprobs).sum(-1)


def ppo_rollout(
    policy: GPT,
    reference: GPT,
    value_head: ValueHead,
    tokenizer: BPETokenizer,
    reward: LexiconReward,
    prompts: Tensor,
    config: PPOConfig,
    *,
    beta: float | None = None,
    generator: torch.Generator | None = None,
) -> Rollout:
    r"""Sample one response per prompt and prepare PPO's targets (Chapter 16).

    The reward of token :math:`t` is :math:`-\beta(\log\pi - \log\pi_{\text{ref}})_t`,
    plus the task's score :math:`r(y)` at the last token
    (:func:`llmbook.alignment.kl_penalised_rewards`); values come from ``value_head`` on
    the reference's hidden states at the position that predicts token :math:`t`;
    advantages and returns from :func:`llmbook.alignment.gae`. ``beta`` overrides
    ``config.beta`` (for an adaptive coefficient).
    """
    _check_models(policy, reference)
    check_type("value_head", value_head, ValueHead, "a ValueHead")
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    check_type("reward", reward, LexiconReward, "a LexiconReward")
    check_type("config", config, PPOConfig, "a PPOConfig")
    prompts = _check_prompts(prompts, policy, config.n_new)
    beta = config.beta if beta is None else check_number("beta", beta, low=0.0)
    ids, mask = sample_responses(policy, prompts, config.n_new, generator=generator)
    texts = _decode_responses(tokenizer, ids, prompts.shape[1])
    reference.eval()
    with torch.no_grad():
        logprobs = token_logprobs(policy(ids)[0].float(), ids, mask)
        ref_logits, h = hidden_states(reference, ids)
        ref_logprobs = token_logprobs(ref_logits.float(), ids, mask)
        features = h[:, :-1].float()
        m = mask[:, 1:]
        values = value_head(features) * m
    scores = reward(texts).to(logprobs)
    rewards = kl_penalised_rewards(scores, logprobs, ref_logprobs, m, beta)
    advantages, returns = gae(rewards, values, m, config.gamma, config.lam)
    return Rollout(
        ids, mask, logprobs, ref_logprobs, features, values, scores, rewards, advantages,
        returns, texts,
    )  # fmt: skip


def ppo_update(
    policy: GPT,
    value_head: ValueHead,
    rollout: Rollout,
    optimizer: torch.optim.Optimizer,
    config: PPOConfig,
) -> dict[str, float]:
    r"""PPO's optimisation phase on one rollout (Chapter 16).

    Advantages are whitened over the rollout (:func:`llmbook.alignment.masked_whiten`);
    then ``config.epochs`` passes over random minibatches minimise
    :func:`~llmbook.alignment.ppo_policy_loss` + :func:`~llmbook.alignment.ppo_value_loss`
    (the two models share no parameter, so the sum trains each on its own loss) with
    ``optimizer``, clipping the policy's gradient norm. Returns the means over steps of
    ``policy_loss``, ``value_loss``, ``clip_fraction`` (tokens whose ratio left
    :math:`[1-\epsilon, 1+\epsilon]`) and ``approx_kl`` (:math:`\mathbb E[k_3]` of
    :math:`\pi_\theta` from the sampling policy, per token).
    """
    check_type("policy", policy, GPT, "an llmbook.gpt.GPT")
    check_type("value_head", value_head, ValueHead, "a ValueHead")
    check_type("rollout", rollout, Rollout, "a Rollout")
    check_type("optimizer", optimizer, torch.optim.Optimizer, "a torch optimizer")
    check_type("config", config, PPOConfig, "a PPOConfig")
    m = rollout.mask[:, 1:]
    adv = masked_whiten(rollout.advantages, m)
    B = rollout.ids.shape[0]
    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss")}
    stats |= {"clip_fraction": [], "approx_kl": []}
    policy.train()
    for _ in range(config.epochs):
        for idx in torch.randperm(B).chunk(config.minibatches):
            idx = idx.to(rollout.ids.device)
            ids, mb_m = rollout.ids[idx], m[idx]
            logprobs = token_logprobs(policy(ids)[0].float(), ids, rollout.mask[idx])
            old = rollout.logprobs[idx]
            pl = ppo_policy_loss(logprobs, old, adv[idx], mb_m, config.clip_eps)
            values = value_head(rollout.features[idx]) * mb_m
            vl = ppo_value_loss(
                values, rollout.values[idx], rollout.returns[idx], mb_m, config.value_clip
            )
            optimizer.zero_grad(set_to_none=True)
            (pl + vl).backward()
            nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            with torch.no_grad():
                log_ratio = (logprobs - old) * mb_m
                clipped = ((log_ratio.exp() - 1).abs() > config.clip_eps) & (mb_m > 0)
                k3 = (log_ratio.exp() - 1 - log_ratio) * mb_m
            stats["policy_loss"].append(pl.item())
            stats["value_loss"].append(vl.item())
            stats["clip_fraction"].append((clipped.sum() / mb_m.sum()).item())
            stats["approx_kl"].append((k3.sum() / mb_m.sum()).item())
    policy.eval()
    return {k: sum(v) / len(v) for k, v in stats.items()}


def _prompt_batches(prompts: Tensor, batch_size: int, iterations: int) -> list[Tensor]:
    """``iterations`` batches of ``batch_size`` prompts: passes over ``prompts`` in a fresh
    random order each (the global generator)."""
    order = torch.cat(
        [torch.randperm(len(prompts)) for _ in range(-(-iterations * batch_size // len(prompts)))]
    )
    return [prompts[order[i * batch_size : (i + 1) * batch_size]] for i in range(iterations)]


def _new_log() -> dict[str, list[float]]:
    return {"reward": [], "kl": [], "beta": [], "elapsed": []}


def train_ppo(
    policy: GPT,
    reference: GPT,
    tokenizer: BPETokenizer,
    reward: LexiconReward,
    prompts: Tensor,
    config: PPOConfig,
    *,
    progress: bool = False,
) -> tuple[ValueHead, dict[str, list[float]]]:
    r"""Train ``policy`` in place with PPO and a KL penalty to ``reference`` (Chapter 16).

    Each iteration draws ``config.batch_size`` prompts (passes over ``prompts`` in random
    order), runs :func:`ppo_rollout` and :func:`ppo_update`; with ``config.kl_target`` the
    coefficient follows :class:`~llmbook.alignment.AdaptiveKLController`. Randomness comes
    from torch's global generator (seed it first). Returns the trained :class:`ValueHead`
    and a log of lists, one entry per iteration: the rollout's mean ``reward`` and ``kl``
    (nats per response), the ``beta`` used, cumulative ``elapsed`` seconds, and the
    :func:`ppo_update` statistics.
    """
    _check_models(policy, reference)
    check_type("config", config, PPOConfig, "a PPOConfig")
    prompts = _check_prompts(prompts, policy, config.n_new)
    progress = check_bool("progress", progress)
    device = next(policy.parameters()).device
    value_head = ValueHead(policy.config.d_model).to(device)
    optimizer = torch.optim.Adam(
        [
            {"params": list(policy.parameters()), "lr": config.lr},
            {"params": list(value_head.parameters()), "lr": config.value_lr},
        ]
    )
    controller = (
        None
        if config.kl_target is None
        else AdaptiveKLController(config.beta, config.kl_target, config.kl_horizon)
    )
    beta, log, start = config.beta, _new_log(), time.perf_counter()
    for it, batch in enumerate(_prompt_batches(prompts, config.batch_size, config.iterations)):
        ro = ppo_rollout(policy, reference, value_head, tokenizer, reward, batch, config, beta=beta)
        stats = ppo_update(policy, value_head, ro, optimizer, config)
        log["reward"].append(ro.scores.mean().item())
        log["kl"].append(ro.kl.mean().item())
        log["beta"].append(beta)
        for k, v in stats.items():
            log.setdefault(k, []).append(v)
        if controller is not None:
            beta = controller.update(log["kl"][-1], config.batch_size)
        log["elapsed"].append(time.perf_counter() - start)
        if progress:
            print(f"ppo {it + 1}/{config.iterations}: reward {log['reward'][-1]:.3f}, "
                  f"kl {log['kl'][-1]:.2f}", flush=True)  # fmt: skip
    return value_head, log


# ------------------------------------------------------------------------------ GRPO
@dataclass(frozen=True)
class GRPOConfig:
    """GRPO's hyperparameters (Chapter 16): ``iterations`` rounds of ``prompts_per_step``
    prompts with ``group_size`` responses each, ``epochs`` passes in ``minibatches``
    minibatches, the KL coefficient ``beta`` (the k3 term of
    :func:`llmbook.alignment.grpo_loss`), ``clip_eps``, ``lr``, ``grad_clip``."""

    iterations: int = 60
    prompts_per_step: int = 16
    group_size: int = 4
    n_new: int = 24
    epochs: int = 2
    minibatches: int = 2
    beta: float = 0.04
    clip_eps: float = 0.2
    lr: float = 1e-4
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        for name in ("iterations", "prompts_per_step", "n_new", "epochs", "minibatches"):
            check_int(name, getattr(self, name), 1)
        check_int("group_size", self.group_size, 2)
        if self.minibatches > self.prompts_per_step * self.group_size:
            raise ValueError(
                f"minibatches must be at most prompts_per_step * group_size, got {self.minibatches}"
            )
        check_number("beta", self.beta, low=0.0)
        check_number("clip_eps", self.clip_eps, low=0.0, high=1.0, strict=True, high_strict=True)
        check_number("lr", self.lr, low=0.0, strict=True)
        check_number("grad_clip", self.grad_clip, low=0.0, strict=True)


def train_grpo(
    policy: GPT,
    reference: GPT,
    tokenizer: BPETokenizer,
    reward: LexiconReward,
    prompts: Tensor,
    config: GRPOConfig,
    *,
    progress: bool = False,
) -> dict[str, list[float]]:
    r"""Train ``policy`` in place with GRPO (Shao et al. 2024; Chapter 16).

    Each iteration samples ``group_size`` responses to each of ``prompts_per_step``
    prompts, scores them, and gives every token of response :math:`i` the group-relative
    advantage :math:`(r_i - \bar r_{\text{group}}) / (\operatorname{std} + \epsilon)`
    (:func:`llmbook.alignment.group_advantages`): no value model. Then ``epochs`` passes
    minimise :func:`llmbook.alignment.grpo_loss` (clipped ratio, k3 penalty to
    ``reference``). Returns a log as :func:`train_ppo`'s (``kl`` is the sequence KL
    estimate :math:`\sum_t \log\pi - \log\pi_{\text{ref}}` of the samples).
    """
    _check_models(policy, reference)
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    check_type("reward", reward, LexiconReward, "a LexiconReward")
    check_type("config", config, GRPOConfig, "a GRPOConfig")
    prompts = _check_prompts(prompts, policy, config.n_new)
    progress = check_bool("progress", progress)
    G = config.group_size
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    log, start = _new_log(), time.perf_counter()
    log["policy_loss"] = []
    batches = _prompt_batches(prompts, config.prompts_per_step, config.iterations)
    for it, batch in enumerate(batches):
        ids, mask = sample_responses(policy, batch.repeat_interleave(G, 0), config.n_new)
        scores = reward(_decode_responses(tokenizer, ids, batch.shape[1]))
        adv = group_advantages(scores, G).float().to(ids.device)
        m = mask[:, 1:]
        with torch.no_grad():
            old = token_logprobs(policy(ids)[0].float(), ids, mask)
            ref = token_logprobs(reference.eval()(ids)[0].float(), ids, mask)
        losses = []
        policy.train()
        for _ in range(config.epochs):
            for idx in torch.randperm(len(ids)).chunk(config.minibatches):
                idx = idx.to(ids.device)
                lp = token_logprobs(policy(ids[idx])[0].float(), ids[idx], mask[idx])
                loss = grpo_loss(lp, old[idx], ref[idx], adv[idx], m[idx], config.clip_eps,
                                 config.beta)  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
                optimizer.step()
                losses.append(loss.item())
        policy.eval()
        log["reward"].append(scores.mean().item())
        log["kl"].append((old - ref).sum(-1).mean().item())
        log["beta"].append(config.beta)
        log["policy_loss"].append(sum(losses) / len(losses))
        log["elapsed"].append(time.perf_counter() - start)
        if progress:
            print(f"grpo {it + 1}/{config.iterations}: reward {log['reward'][-1]:.3f}, "
                  f"kl {log['kl'][-1]:.2f}", flush=True)  # fmt: skip
    return log


# ---------------------------------------------------------------------- zoo trainers
def _check_zoo_args(recipe: Any, base: Any) -> None:
    # by duck type: `python -m llmbook.zoo` runs the zoo as __main__, with its own classes
    if not all(hasattr(recipe, a) for a in ("task_args", "train_config", "model_config")):
        raise ValueError(f"recipe must be an llmbook.zoo.Recipe, got {type(recipe).__name__}")
    if not isinstance(getattr(base, "model", None), GPT) or not isinstance(
        getattr(base, "tokenizer", None), BPETokenizer
    ):
        raise ValueError(f"base must be an llmbook.zoo.ZooModel, got {type(base).__name__}")


def _zoo_setup(recipe: Any, base: Any, device: torch.device) -> tuple[Any, ...]:
    tokenizer = base.tokenizer
    args = dict(recipe.task_args)
    n_prompts = check_int("task_args['n_prompts']", args.pop("n_prompts", 1024), 1)
    prompts = task_prompts(tokenizer, n_prompts, PROMPT_TOKENS, split="train", seed=0)
    policy = copy.deepcopy(base.model).float().to(device)
    reference = copy.deepcopy(base.model).float().to(device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    reward = LexiconReward(genre_lexicon())
    return tokenizer, args, prompts.to(device), policy, reference, reward


def _zoo_result(policy: GPT, log: dict[str, list[float]], n_tokens: int) -> tuple[Any, ...]:
    from llmbook.train import History

    steps = list(range(1, len(log["reward"]) + 1))
    history = History(
        steps=steps,
        lrs=[],
        train_losses=[-r for r in log["reward"]],
        tokens_seen=[n_tokens * s for s in steps],
        elapsed=list(log["elapsed"]),
        precision="fp32",
    )
    metrics = {
        "reward": log["reward"],
        "kl": log["kl"],
        "beta": log["beta"],
        "train_seconds": log["elapsed"][-1],
        "train_loss": history.train_losses[-1],
    }
    return policy.eval(), history, metrics


def zoo_ppo(recipe: Any, base: Any, device: torch.device, progress: bool) -> tuple[Any, ...]:
    """The zoo's ``"ppo"`` task (``llmbook.zoo.DERIVED_TASKS``): :func:`train_ppo` from the
    base model on the comedy lexicon reward (Chapter 16).

    ``recipe.train`` gives ``max_steps`` (iterations), ``batch_size`` (prompts per
    rollout) and ``lr``; ``recipe.task_args`` the other :class:`PPOConfig` fields and
    ``n_prompts`` (training prompts, default 1024). The value head is discarded. Returns
    ``(policy, history, metrics)`` with the per-iteration ``reward``, ``kl`` and ``beta``.
    """
    _check_zoo_args(recipe, base)
    tokenizer, args, prompts, policy, reference, reward = _zoo_setup(recipe, base, device)
    known = {f.name for f in fields(PPOConfig)} - {"iterations", "batch_size", "lr"}
    if set(args) - known:
        raise ValueError(f"task_args has unknown fields {sorted(set(args) - known)}")
    tcfg = recipe.train_config()
    config = PPOConfig(iterations=tcfg.max_steps, batch_size=tcfg.batch_size, lr=tcfg.lr, **args)
    _, log = train_ppo(policy, reference, tokenizer, reward, prompts, config, progress=progress)
    return _zoo_result(policy, log, config.batch_size * config.n_new)


def zoo_grpo(recipe: Any, base: Any, device: torch.device, progress: bool) -> tuple[Any, ...]:
    """The zoo's ``"grpo"`` task: :func:`train_grpo` from the base model on the comedy
    lexicon reward (Chapter 16).

    ``recipe.train`` gives ``max_steps`` (iterations), ``batch_size`` (prompts per step)
    and ``lr``; ``recipe.task_args`` the other :class:`GRPOConfig` fields and
    ``n_prompts``. Returns ``(policy, history, metrics)`` as :func:`zoo_ppo`.
    """
    _check_zoo_args(recipe, base)
    tokenizer, args, prompts, policy, reference, reward = _zoo_setup(recipe, base, device)
    known = {f.name for f in fields(GRPOConfig)} - {"iterations", "prompts_per_step", "lr"}
    if set(args) - known:
        raise ValueError(f"task_args has unknown fields {sorted(set(args) - known)}")
    tcfg = recipe.train_config()
    config = GRPOConfig(
        iterations=tcfg.max_steps, prompts_per_step=tcfg.batch_size, lr=tcfg.lr, **args
    )
    log = train_grpo(policy, reference, tokenizer, reward, prompts, config, progress=progress)
    n = config.prompts_per_step * config.group_size * config.n_new
    return _zoo_result(policy, log, n)


# ------------------------------------------------------------- critique and revise
@dataclass(frozen=True)
class Violation:
    """A word a :class:`Rule` flags: the rule's ``rule`` name, the ``word`` and the
    character offset ``start`` of the word in the text."""

    rule: str
    word: str
    start: int

    def __post_init__(self) -> None:
        check_type("rule", self.rule, str, "a str")
        check_type("word", self.word, str, "a str")
        check_int("start", self.start, 0)


@dataclass(frozen=True)
class Rule:
    """A principle of the critic's constitution (Chapter 16): ``flags(words)`` returns
    the indices of the words (lower-cased, :func:`llmbook.reward.words`) that break it."""

    name: str
    flags: Callable[[list[str]], list[int]]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {show(self.name)}")
        if not callable(self.flags):
            raise ValueError(f"flags must be callable, got {show(self.flags)}")


def banned_words_rule(name: str, banned: Sequence[str]) -> Rule:
    """A rule that flags every occurrence of a word of ``banned`` (lower-case words)."""
    if isinstance(banned, str) or not isinstance(banned, Sequence | set | frozenset):
        raise ValueError(f"banned must be a collection of words, got {show(banned)}")
    words_ = frozenset(banned)
    if not words_ or not all(isinstance(w, str) and w == w.lower() and w for w in words_):
        raise ValueError("banned must hold at least one non-empty lower-case word")
    return Rule(name, lambda ws: [i for i, w in enumerate(ws) if w in words_])


def repetition_rule(name: str = "repetition") -> Rule:
    """A rule that flags a word equal to the word just before it ("chain chain")."""
    return Rule(name, lambda ws: [i for i in range(1, len(ws)) if ws[i] == ws[i - 1]])


def critique(text: str, rules: Sequence[Rule]) -> list[Violation]:
    """The critic: every word of ``text`` that a rule of ``rules`` flags, in text order."""
    check_type("text", text, str, "a str")
    if isinstance(rules, Rule) or not isinstance(rules, Sequence) or not rules:
        raise ValueError(f"rules must be a non-empty list of Rule, got {show(rules)}")
    for r in rules:
        check_type("rules[i]", r, Rule, "a Rule")
    matches = list(_WORD.finditer(text))
    ws = [m.group().lower() for m in matches]
    found = {(matches[i].start(), r.name): ws[i] for r in rules for i in r.flags(ws)}
    return [Violation(name, w, s) for (s, name), w in sorted(found.items())]


def _token_at(tokenizer: BPETokenizer, ids: list[int], char: int) -> int:
    """The index of the token of ``ids`` whose decoded text holds character ``char``."""
    for k in range(len(ids)):
        if len(tokenizer.decode(ids[: k + 1])) > char:
            return k
    return len(ids) - 1


def critique_and_revise(
    policy: GPT,
    tokenizer: BPETokenizer,
    ids: Tensor,
    n_prompt: int,
    rules: Sequence[Rule],
    *,
    rounds: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, list[float]]:
    r"""Constitutional AI's critique-and-revise loop with a rule-based critic (Chapter 16).

    .. math:: c_k = \operatorname{critique}(y_{k-1}), \qquad
       y_k = \operatorname{revise}(x, y_{k-1}, c_k), \qquad k = 1, \dots, K.

    The critic lists the words of each response (after the ``n_prompt`` prompt tokens of
    each row of ``ids``) that break a rule; the reviser keeps the response up to the token
    where the first flagged word starts and samples the rest again from ``policy``, at
    temperature 1, with ``generator``. Rows without a violation are kept. Returns the
    revised ids (the shape of ``ids``) and the fraction of responses with a violation
    before each round and after the last (``rounds + 1`` numbers).
    """
    check_type("policy", policy, GPT, "an llmbook.gpt.GPT")
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.dtype != torch.int64:
        raise ValueError(f"ids must be a (B, T) int64 tensor, got {show(ids)}")
    n_prompt = check_int("n_prompt", n_prompt, 1, ids.shape[1] - 1)
    rounds = check_int("rounds", rounds, 0)
    ids = ids.clone()
    rates = []
    for k in range(rounds + 1):
        cut: dict[int, list[int]] = {}  # first flagged token -> rows
        for row in range(ids.shape[0]):
            response = ids[row, n_prompt:].tolist()
            found = critique(tokenizer.decode(response), rules)
            if found:
                at = _token_at(tokenizer, response, found[0].start)
                cut.setdefault(n_prompt + at, []).append(row)
        rates.append(sum(len(r) for r in cut.values()) / ids.shape[0])
        if k == rounds:
            break
        for start, rows in sorted(cut.items()):
            redo, _ = sample_responses(
                policy, ids[rows, :start], ids.shape[1] - start, generator=generator
            )
            ids[rows] = redo
    return ids, rates
