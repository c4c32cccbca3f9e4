r"""Preference learning: the losses of RLHF (reward model, PPO, GRPO) and of DPO
(Chapters 16 and 17).

Everything here works on tensors a causal language model already produced, so each idea is one
short function that can be checked by hand:

* log-probabilities of a response: :func:`token_logprobs` (the shift by one made explicit),
  :func:`sequence_logprobs`, :func:`token_entropy`, and the masked reductions
  :func:`masked_sum`, :func:`masked_mean`, :func:`masked_whiten`;
* the reward model: :func:`bradley_terry_loss`, :func:`preference_accuracy`;
* PPO: :func:`gae` (advantages and returns), :func:`ppo_policy_loss` (the clipped surrogate),
  :func:`ppo_value_loss`, :func:`kl_estimators` (Schulman's k1, k2, k3),
  :func:`kl_penalised_rewards` and :class:`AdaptiveKLController` (Ziegler et al. 2019);
* GRPO (Shao et al. 2024): :func:`group_advantages`, :func:`grpo_loss`;
* DPO (Rafailov et al. 2023): :func:`dpo_loss` (sigmoid, conservative, IPO, hinge),
  :func:`implicit_rewards`, and the optimum it targets, :func:`kl_regularised_optimum`.

Conventions. A batch holds B sequences of T tokens (prompt then response, right-padded);
``response_mask`` (B, T) is 1 on response tokens and 0 on prompt and padding. Per-token
quantities of the response (log-probabilities, values, rewards, advantages) have shape
(B, T - 1) after the shift of :func:`token_logprobs`, with the mask ``response_mask[:, 1:]``;
the functions of the RL losses take any (B, n) tensors with a (B, n) mask. Losses are means
(a scalar); :func:`dpo_loss` also gives one value per pair with ``reduction="none"``.

The losses equal those of Hugging Face ``trl`` 1.16, tested by calling its code in float64:
``DPOTrainer._compute_loss`` (sigmoid, IPO, hinge; also end to end on a GPT-2 through ``trl``'s
fused LM head, at its float32 precision), ``GRPOTrainer._compute_loss`` (``loss_type="grpo"``),
``RewardTrainer.compute_loss`` (with and without margin), ``selective_log_softmax`` and
``entropy_from_logits``; the group advantages against ``GRPOTrainer``'s formula rebuilt with
its ``nanstd``. ``trl`` 1.16 has no label smoothing in its sigmoid DPO loss: conservative DPO
is tested against its definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook._validate import (
    check_choice,
    check_float_tensor,
    check_int,
    check_int_ids,
    check_number,
    show,
)

__all__ = [
    "AdaptiveKLController",
    "bradley_terry_loss",
    "dpo_loss",
    "gae",
    "group_advantages",
    "grpo_loss",
    "implicit_rewards",
    "kl_estimators",
    "kl_penalised_rewards",
    "kl_regularised_optimum",
    "masked_mean",
    "masked_sum",
    "masked_whiten",
    "ppo_policy_loss",
    "ppo_value_loss",
    "preference_accuracy",
    "sequence_logprobs",
    "token_entropy",
    "token_logprobs",
]

_REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------------------ checks
def _tensor(name: str, value: object) -> Tensor:
    return check_float_tensor(name, value, finite=True)


def _same_shape(names: tuple[str, ...], values: tuple[Tensor, ...]) -> None:
    shapes = [tuple(v.shape) for v in values]
    if any(s != shapes[0] for s in shapes):
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(f"{' and '.join(names)} must have the same shape, got {listed}")


def _mask(mask: object, like: Tensor, name: str = "mask", per_row: bool = False) -> Tensor:
    """``mask`` as a float tensor of ``like``'s shape holding only 0 and 1, not all 0."""
    if not isinstance(mask, Tensor) or mask.is_complex():
        raise ValueError(
            f"{name} must be a tensor of 0s and 1s (bool, int or float), got {show(mask)}"
        )
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(
            f"{name} must have the shape {tuple(like.shape)} of the values it masks, "
            f"got {tuple(mask.shape)}"
        )
    m = mask.to(like.dtype if like.is_floating_point() else torch.float32)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 (or False and True)")
    if per_row and m.ndim >= 1:
        empty = (m.reshape(m.shape[0], -1).sum(1) == 0).nonzero().flatten()
        if len(empty):
            raise ValueError(
                f"{name} is empty in row {int(empty[0])}: every sequence needs at least one "
                f"masked-in (response) position"
            )
    if not bool(m.any()):
        raise ValueError(f"{name} is empty (all zeros): there is nothing to average over")
    return m


def _beta(value: object, name: str = "beta") -> float:
    return check_number(name, value, low=0.0, strict=True)


def _unit(name: str, value: object) -> float:
    return check_number(name, value, low=0.0, high=1.0)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    reduction = check_choice("reduction", reduction, _REDUCTIONS)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


# ---------------------------------------------------------------- masked reductions
def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    r"""Sum of ``x`` over the positions where ``mask`` is 1: :math:`\sum_t m_t x_t`.

    Parameters
    ----------
    x : Tensor
        Values (any shape).
    mask : Tensor
        0/1 (or bool) of the shape of ``x``; not all zero.
    dim : int, optional
        Reduce over this dimension only (default: all).
    """
    x = _tensor("x", x)
    m = _mask(mask, x)
    return (x * m).sum() if dim is None else (x * m).sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    r"""Mean of ``x`` over the masked-in positions: :math:`\sum_t m_t x_t / \sum_t m_t`.

    With ``dim``, every slice along ``dim`` needs at least one masked-in position (an empty
    slice would be 0/0): otherwise ``ValueError``.
    """
    x = _tensor("x", x)
    m = _mask(mask, x)
    if dim is None:
        return (x * m).sum() / m.sum()
    count = m.sum(dim)
    if bool((count == 0).any()):
        raise ValueError(f"mask is empty along dim={dim} in some slice: its mean would be 0/0")
    return (x * m).sum(dim) / count


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    r"""``x`` standardised over the masked-in positions; masked-out positions become 0.

    .. math:: \hat x_t = \frac{x_t - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
       \mu = \frac{\sum_t m_t x_t}{\sum_t m_t}, \quad
       \sigma^2 = \frac{\sum_t m_t (x_t - \mu)^2}{\sum_t m_t - 1}

    (Bessel-corrected variance, as PPO implementations whiten advantages). With
    ``shift_mean=False`` the mean is added back: only the scale changes.
    """
    x = _tensor("x", x)
    m = _mask(mask, x)
    n = m.sum()
    if n < 2:
        raise ValueError("mask must have at least 2 masked-in positions to estimate a variance")
    eps = check_number("eps", eps, low=0.0)
    mean = (x * m).sum() / n
    var = ((x - mean) ** 2 * m).sum() / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


# -------------------------------------------------------- log-probabilities of a response
def _check_lm(logits: object, input_ids: object, response_mask: object) -> tuple[Tensor, ...]:
    logits = check_float_tensor("logits", logits, ndim=3, shape="(B, T, V)", finite=True)
    B, T, V = logits.shape
    input_ids = check_int_ids("input_ids", input_ids, ndim=2, high=V)
    if input_ids.shape[0] != B:
        raise ValueError(
            f"logits and input_ids must have the same batch size B, got {B} and "
            f"{input_ids.shape[0]}"
        )
    if input_ids.shape[1] != T:
        what = "are misaligned by one" if abs(input_ids.shape[1] - T) == 1 else "differ in length"
        raise ValueError(
            f"logits and input_ids {what}: logits has T={T} positions, input_ids "
            f"T={input_ids.shape[1]}. Pass the logits of the whole sequence, unshifted: the shift "
            f"(logits at t score token t+1) is done here"
        )
    m = _mask(response_mask, input_ids.float(), "response_mask", per_row=True).to(logits.dtype)
    if bool(m[:, 0].any()):
        raise ValueError(
            "response_mask[:, 0] must be 0: no logit predicts the first token of a sequence "
            "(the response starts after at least one prompt token)"
        )
    return logits, input_ids.to(logits.device), m.to(logits.device)


def token_logprobs(logits: Tensor, input_ids: Tensor, response_mask: Tensor) -> Tensor:
    r"""Per-token log-probabilities of the response, (B, T - 1); 0 on prompt and padding.

    A causal LM's logits at position :math:`t` score the *next* token, so the log-probability
    of token :math:`x_{t+1}` is read from position :math:`t`:

    .. math:: \ell_t = \log \operatorname{softmax}(z_t)[x_{t+1}] \cdot m_{t+1},
       \qquad t = 0, \dots, T-2.

    Column :math:`t` of the result belongs to token :math:`t+1`, so its mask is
    ``response_mask[:, 1:]`` (use that mask with :func:`masked_sum` and the RL losses).

    Parameters
    ----------
    logits : Tensor
        (B, T, V), the model's output on ``input_ids`` (not shifted).
    input_ids : Tensor
        (B, T) integer ids, prompt then response (then padding).
    response_mask : Tensor
        (B, T) 0/1, 1 on response tokens; ``response_mask[:, 0]`` must be 0 and every row
        needs a response token.
    """
    logits, input_ids, m = _check_lm(logits, input_ids, response_mask)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1) * m[:, 1:]


def sequence_logprobs(
    logits: Tensor, input_ids: Tensor, response_mask: Tensor, average: bool = False
) -> Tensor:
    r"""Log-probability of each response, (B,): :math:`\log\pi(y\mid x) = \sum_t \ell_t`.

    With ``average=True``, the per-token mean :math:`\frac1{|y|}\sum_t \ell_t` (the
    length-normalised form IPO uses in ``trl``). See :func:`token_logprobs` for the shift.
    """
    if not isinstance(average, bool):
        raise ValueError(f"average must be True or False, got {show(average)}")
    per_token = token_logprobs(logits, input_ids, response_mask)
    total = per_token.sum(-1)
    return total / response_mask[:, 1:].to(per_token).sum(-1) if average else total


def token_entropy(logits: Tensor) -> Tensor:
    r"""Entropy of the next-token distribution at each position, in nats, shape ``logits[..., 0]``.

    .. math:: H_t = -\sum_v p_t(v) \log p_t(v), \qquad p_t = \operatorname{softmax}(z_t).
    """
    logits = check_float_tensor("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last dimension of size V >= 1, got {show(logits)}")
    if bool((torch.isnan(logits) | (logits == torch.inf)).any()):
        raise ValueError("logits must hold finite numbers or -inf (masked tokens), got NaN or +inf")
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)  # 0 log 0 = 0


# ------------------------------------------------------------------------- reward model
def _pair(chosen: object, rejected: object, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    c, r = _tensor(names[0], chosen), _tensor(names[1], rejected)
    _same_shape(names, (c, r))
    return c, r


def bradley_terry_loss(
    r_chosen: Tensor, r_rejected: Tensor, margin: Tensor | float | None = None
) -> Tensor:
    r"""Reward-model loss of the Bradley–Terry model (mean over pairs).

    .. math:: \mathcal L = -\log\sigma\big(r(x, y_w) - r(x, y_l) - m\big)

    :math:`P(y_w \succ y_l) = \sigma(r_w - r_l)` is the Bradley–Terry preference probability;
    the optional margin :math:`m` (``trl``'s ``margin`` column) asks for a gap of at least
    :math:`m`.
    """
    c, r = _pair(r_chosen, r_rejected, ("r_chosen", "r_rejected"))
    diff = c - r
    if margin is not None:
        if isinstance(margin, Tensor):
            margin = _tensor("margin", margin)
            if margin.ndim and tuple(margin.shape) != tuple(c.shape):
                raise ValueError(
                    f"margin must be a number or have the shape {tuple(c.shape)} of r_chosen, "
                    f"got {tuple(margin.shape)}"
                )
        else:
            margin = check_number("margin", margin)
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def preference_accuracy(r_chosen: Tensor, r_rejected: Tensor) -> float:
    r"""Fraction of pairs the rewards order correctly, :math:`\frac1N\sum[r_w > r_l]` (ties count
    as wrong)."""
    c, r = _pair(r_chosen, r_rejected, ("r_chosen", "r_rejected"))
    if c.numel() == 0:
        raise ValueError("r_chosen must hold at least one pair, got an empty tensor")
    return float((c > r).double().mean())


# ------------------------------------------------------------------------------------ PPO
def gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016): advantages and returns, (B, n).

    .. math:: \delta_t = r_t + \gamma V_{t+1} - V_t, \qquad
       \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}
       = \delta_t + \gamma\lambda \hat A_{t+1}, \qquad \hat R_t = \hat A_t + V_t.

    Computed by the reverse scan :math:`\hat A_t = \delta_t + \gamma\lambda\hat A_{t+1}`
    (one step per position, vectorised over the batch). A response ends where ``mask`` ends:
    a position whose next position is masked out is terminal (:math:`V_{t+1} = 0`,
    :math:`\hat A_{t+1} = 0`); masked-out positions get advantage and return 0.
    ``lam = 1`` gives the Monte-Carlo return minus :math:`V_t`, ``lam = 0`` the one-step TD error.

    Parameters
    ----------
    rewards, values : Tensor
        (B, n) per-token rewards and value estimates :math:`V_t` (detached).
    mask : Tensor, optional
        (B, n) 0/1, 1 on response tokens (default: all ones).
    gamma, lam : float
        Discount :math:`\gamma` and GAE :math:`\lambda`, each in [0, 1].
    """
    rewards = check_float_tensor("rewards", rewards, ndim=2, shape="(B, n)", finite=True)
    values = check_float_tensor("values", values, ndim=2, shape="(B, n)", finite=True)
    _same_shape(("rewards", "values"), (rewards, values))
    gamma, lam = _unit("gamma", gamma), _unit("lam", lam)
    m = torch.ones_like(rewards) if mask is None else _mask(mask, rewards)
    next_m = F.pad(m[:, 1:], (0, 1))  # 1 where position t+1 continues the response
    next_v = F.pad(values[:, 1:], (0, 1)) * next_m
    delta = (rewards + gamma * next_v - values) * m
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):  # reverse scan over positions
        running = delta[:, t] + gamma * lam * next_m[:, t] * running
        advantages[:, t] = running
    advantages = advantages * m
    return advantages, (advantages + values) * m


def _ratio_inputs(
    logprobs: object, old_logprobs: object, advantages: object, mask: object, clip_eps: object
) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    logprobs = _tensor("logprobs", logprobs)
    old_logprobs = _tensor("old_logprobs", old_logprobs)
    _same_shape(("logprobs", "old_logprobs"), (logprobs, old_logprobs))
    advantages = _tensor("advantages", advantages)
    if advantages.shape != logprobs.shape:
        raise ValueError(
            f"advantages must have the shape {tuple(logprobs.shape)} of logprobs, "
            f"got {tuple(advantages.shape)}"
        )
    m = _mask(mask, logprobs, per_row=logprobs.ndim == 2)
    eps = check_number("clip_eps", clip_eps, low=0.0, high=1.0, strict=True, high_strict=True)
    return logprobs, old_logprobs, advantages, m, eps


def _clipped_surrogate(logprobs: Tensor, old: Tensor, adv: Tensor, eps: float) -> Tensor:
    ratio = torch.exp(logprobs - old)
    return -torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)


def ppo_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
) -> Tensor:
    r"""PPO's clipped surrogate loss (Schulman et al. 2017), the mean over masked-in tokens.

    .. math::
       \begin{aligned}
       \mathcal L &= -\,\mathbb E_t\Big[\min\big(\rho_t \hat A_t,\;
       \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)\Big],\\
       \rho_t &= \frac{\pi_\theta(a_t\mid s_t)}{\pi_{\text{old}}(a_t\mid s_t)}
       = e^{\log\pi_\theta - \log\pi_{\text{old}}}.
       \end{aligned}

    The gradient is zero for a token whose ratio has left the trust region in the direction
    its advantage favours (:math:`\rho > 1+\epsilon` with :math:`\hat A > 0`, or
    :math:`\rho < 1-\epsilon` with :math:`\hat A < 0`); elsewhere it is that of
    :math:`-\rho\hat A`. ``clip_eps`` must lie in (0, 1).
    """
    lp, old, adv, m, eps = _ratio_inputs(logprobs, old_logprobs, advantages, mask, clip_eps)
    per_token = _clipped_surrogate(lp, old, adv, eps)
    return (per_token * m).sum() / m.sum()


def ppo_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
) -> Tensor:
    r"""PPO's clipped value loss, the mean over masked-in tokens.

    .. math::
       \begin{aligned}
       \mathcal L_V &= \tfrac12\,\mathbb E_t\Big[\max\big((V_t - \hat R_t)^2,\;
       (V^{\text{clip}}_t - \hat R_t)^2\big)\Big],\\
       V^{\text{clip}}_t &= V^{\text{old}}_t + \operatorname{clip}(V_t - V^{\text{old}}_t,
       -\epsilon, \epsilon).
       \end{aligned}
    """
    v = _tensor("values", values)
    old = _tensor("old_values", old_values)
    ret = _tensor("returns", returns)
    _same_shape(("values", "old_values", "returns"), (v, old, ret))
    m = _mask(mask, v)
    eps = check_number("clip_eps", clip_eps, low=0.0, strict=True)
    v_clip = old + torch.clamp(v - old, -eps, eps)
    per_token = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2)
    return (per_token * m).sum() / m.sum()


def kl_estimators(logprobs: Tensor, ref_logprobs: Tensor) -> dict[str, Tensor]:
    r"""Schulman's three per-sample estimators of :math:`\mathrm{KL}(\pi\,\|\,\pi_{\text{ref}})`.

    For a sample :math:`a \sim \pi` and :math:`\rho = \pi_{\text{ref}}(a)/\pi(a)`:

    .. math:: k_1 = -\log\rho, \qquad k_2 = \tfrac12(\log\rho)^2, \qquad
       k_3 = (\rho - 1) - \log\rho.

    :math:`k_1` and :math:`k_3` are unbiased (:math:`\mathbb E_\pi[\rho] = 1`); :math:`k_3 \ge 0`
    for every sample (since :math:`\log\rho \le \rho - 1`) and has low variance when the two
    policies are close; :math:`k_2 \ge 0` is biased (it estimates an f-divergence that agrees
    with KL to second order) but has low variance. Returns ``{"k1", "k2", "k3"}``, each of the
    shape of ``logprobs``.
    """
    lp = _tensor("logprobs", logprobs)
    ref = _tensor("ref_logprobs", ref_logprobs)
    _same_shape(("logprobs", "ref_logprobs"), (lp, ref))
    log_rho = ref - lp
    return {"k1": -log_rho, "k2": 0.5 * log_rho**2, "k3": torch.expm1(log_rho) - log_rho}


def kl_penalised_rewards(
    scores: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    beta: float,
    estimator: str = "k1",
) -> Tensor:
    r"""Per-token rewards of RLHF with a KL penalty (Ziegler et al. 2019; Ouyang et al. 2022).

    .. math:: r_t = -\beta\, k(\pi_\theta, \pi_{\text{ref}})_t
       + [t = \text{last response token}]\; s(x, y)

    Every response token pays the KL estimate ``estimator`` (see :func:`kl_estimators`;
    ``k1`` is :math:`\log\pi_\theta - \log\pi_{\text{ref}}`), and the reward model's score
    :math:`s` of the whole response arrives at its last token. Shape (B, n); 0 where masked out.
    ``beta = 0`` turns the penalty off.
    """
    lp = check_float_tensor("logprobs", logprobs, ndim=2, shape="(B, n)", finite=True)
    kl = kl_estimators(lp, ref_logprobs)[check_choice("estimator", estimator, ("k1", "k2", "k3"))]
    m = _mask(mask, lp, per_row=True)
    scores = check_float_tensor("scores", scores, ndim=1, shape="(B,)", finite=True)
    if scores.shape[0] != lp.shape[0]:
        raise ValueError(
            f"scores must hold one score per sequence, B={lp.shape[0]}, got {scores.shape[0]}"
        )
    beta = check_number("beta", beta, low=0.0)
    last = (m * torch.arange(1, m.shape[1] + 1, device=m.device)).argmax(dim=1)
    rewards = -beta * kl * m
    rewards[torch.arange(m.shape[0]), last] += scores.to(rewards)
    return rewards


class AdaptiveKLController:
    r"""The adaptive KL coefficient of Ziegler et al. (2019), a proportional controller.

    .. math:: e_t = \operatorname{clip}\Big(\frac{\mathrm{KL}_t}{\mathrm{KL}_{\text{target}}}
       - 1,\, -0.2,\, 0.2\Big), \qquad
       \beta_{t+1} = \beta_t\Big(1 + e_t\,\frac{n_{\text{steps}}}{\text{horizon}}\Big).

    ``beta`` grows while the measured KL is above the target and shrinks while it is below.

    Parameters
    ----------
    init_beta : float
        Initial coefficient, > 0.
    target : float
        Target KL (nats per sequence), > 0.
    horizon : float
        Horizon (in samples) of the controller, > 0.
    """

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        self.beta = _beta(init_beta, "init_beta")
        self.target = check_number("target", target, low=0.0, strict=True)
        self.horizon = check_number("horizon", horizon, low=0.0, strict=True)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move ``beta`` after a batch of ``n_steps`` samples with mean KL ``current_kl``; return
        the new ``beta``."""
        current_kl = check_number("current_kl", current_kl)
        n_steps = check_int("n_steps", n_steps, 1)
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta


# ----------------------------------------------------------------------------------- GRPO
def group_advantages(
    rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
) -> Tensor:
    r"""GRPO's group-relative advantages (Shao et al. 2024), one per completion, (N,).

    The N completions come in groups of ``group_size`` G (consecutive, the G samples of one
    prompt). Each reward is compared with its own group:

    .. math:: \hat A_i = \frac{r_i - \operatorname{mean}(r_{\text{group}})}
       {\operatorname{std}(r_{\text{group}}) + \epsilon}

    with the Bessel-corrected std and :math:`\epsilon = 10^{-4}`, as ``trl``'s
    ``GRPOTrainer``; ``scale=False`` keeps only the centring (Dr. GRPO, Liu et al. 2025).
    Every token of completion :math:`i` gets :math:`\hat A_i`.
    """
    rewards = check_float_tensor("rewards", rewards, ndim=1, shape="(N,)", finite=True)
    G = check_int("group_size", group_size, 2)
    if rewards.shape[0] % G or rewards.shape[0] == 0:
        raise ValueError(
            f"group_size must divide the number of rewards N={rewards.shape[0]}, got {G}"
        )
    if not isinstance(scale, bool):
        raise ValueError(f"scale must be True or False, got {show(scale)}")
    eps = check_number("eps", eps, low=0.0)
    groups = rewards.reshape(-1, G)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (groups.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> Tensor:
    r"""GRPO's loss (Shao et al. 2024, DeepSeekMath eq. 3), as a quantity to minimise.

    .. math:: \mathcal L = -\frac1G\sum_{i=1}^G \frac1{|o_i|}\sum_{t=1}^{|o_i|}
       \Big[\min\big(\rho_{i,t}\hat A_i,\ \operatorname{clip}(\rho_{i,t}, 1-\epsilon,
       1+\epsilon)\hat A_i\big) - \beta\, k_{3,i,t}\Big]

    with :math:`\rho_{i,t} = \pi_\theta/\pi_{\text{old}}` per token and the per-token
    estimator :math:`k_3 = \pi_{\text{ref}}/\pi_\theta - \log(\pi_{\text{ref}}/\pi_\theta) - 1`
    of the KL to the reference (:func:`kl_estimators`). Each completion's tokens are averaged
    first, then the completions (``trl``'s ``loss_type="grpo"``).

    Parameters
    ----------
    logprobs, old_logprobs, ref_logprobs : Tensor
        (N, n) per-token log-probabilities under :math:`\pi_\theta`, :math:`\pi_{\text{old}}`
        (the sampling policy) and :math:`\pi_{\text{ref}}`.
    advantages : Tensor
        (N,) one per completion (:func:`group_advantages`).
    mask : Tensor
        (N, n) 0/1, 1 on completion tokens; every row needs one.
    clip_eps : float
        :math:`\epsilon` in (0, 1).
    beta : float
        KL coefficient, >= 0 (0 drops the KL term).
    """
    lp = check_float_tensor("logprobs", logprobs, ndim=2, shape="(N, n)", finite=True)
    advantages = check_float_tensor("advantages", advantages, ndim=1, shape="(N,)", finite=True)
    if advantages.shape[0] != lp.shape[0]:
        raise ValueError(
            f"advantages must hold one value per completion, N={lp.shape[0]}, "
            f"got {advantages.shape[0]}"
        )
    adv = advantages[:, None].expand_as(lp)
    lp, old, adv, m, eps = _ratio_inputs(lp, old_logprobs, adv, mask, clip_eps)
    beta = check_number("beta", beta, low=0.0)
    per_token = _clipped_surrogate(lp, old, adv, eps)
    if beta:
        per_token = per_token + beta * kl_estimators(lp, ref_logprobs)["k3"]
    else:
        _same_shape(("logprobs", "ref_logprobs"), (lp, _tensor("ref_logprobs", ref_logprobs)))
    return ((per_token * m).sum(-1) / m.sum(-1)).mean()


# ------------------------------------------------------------------------------------ DPO
def implicit_rewards(policy_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    r"""DPO's implicit reward of a response, :math:`\hat r(x, y) = \beta\log\frac{\pi_\theta(y\mid
    x)}{\pi_{\text{ref}}(y\mid x)}` (the reward up to a prompt-only term :math:`\beta\log Z(x)`
    for which :math:`\pi_\theta` is the KL-regularised optimum)."""
    p, r = _pair(policy_logps, ref_logps, ("policy_logps", "ref_logps"))
    return _beta(beta) * (p - r)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""The DPO loss (Rafailov et al. 2023) and its IPO and hinge variants.

    With the difference of log-ratios of the chosen (w) and rejected (l) responses

    .. math:: h = \log\frac{\pi_\theta(y_w)}{\pi_{\text{ref}}(y_w)}
       - \log\frac{\pi_\theta(y_l)}{\pi_{\text{ref}}(y_l)},

    * ``"sigmoid"`` (DPO): :math:`-(1-\varepsilon)\log\sigma(\beta h) - \varepsilon
      \log\sigma(-\beta h)`; :math:`\varepsilon` = ``label_smoothing`` > 0 is conservative DPO
      (cDPO: the label is wrong with probability :math:`\varepsilon`), 0 is DPO;
    * ``"ipo"`` (Azar et al. 2023): :math:`(h - \frac1{2\beta})^2` (``trl`` passes
      per-token-averaged log-probabilities here: :func:`sequence_logprobs` with ``average``);
    * ``"hinge"`` (SLiC, Zhao et al. 2023): :math:`\max(0, 1 - \beta h)`.

    Inputs are sequence log-probabilities (B,) (:func:`sequence_logprobs`); ``beta`` > 0,
    ``label_smoothing`` in [0, 0.5) and only with ``"sigmoid"``.
    """
    names = (
        "policy_chosen_logps",
        "policy_rejected_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
    )
    logps = [
        _tensor(n, v)
        for n, v in zip(
            names,
            (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
            strict=True,
        )
    ]
    _same_shape(names, tuple(logps))
    beta = _beta(beta)
    loss_type = check_choice("loss_type", loss_type, ("sigmoid", "ipo", "hinge"))
    eps = check_number("label_smoothing", label_smoothing, low=0.0, high=0.5, high_strict=True)
    if eps and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to loss_type='sigmoid' only, got {loss_type!r}")
    pc, pr, rc, rr = logps
    h = (pc - rc) - (pr - rr)
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = torch.relu(1 - beta * h)
    return _reduce(losses, reduction)


def kl_regularised_optimum(ref_probs: Tensor, rewards: Tensor, beta: float) -> Tensor:
    r"""The policy maximising :math:`\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,
    \pi_{\text{ref}})` over a discrete set of responses (a bandit), along the last dimension.

    .. math:: \pi^*(y) = \frac{\pi_{\text{ref}}(y)\, e^{r(y)/\beta}}{Z}, \qquad
       Z = \sum_y \pi_{\text{ref}}(y)\, e^{r(y)/\beta},

    computed as :math:`\operatorname{softmax}(\log\pi_{\text{ref}} + r/\beta)`; the maximum
    value is :math:`\beta\log Z`. DPO's minimiser on Bradley–Terry preferences from :math:`r`.
    """
    p = _tensor("ref_probs", ref_probs)
    if (
        p.ndim < 1
        or bool((p < 0).any())
        or not torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-6)
    ):
        raise ValueError("ref_probs must be probabilities (>= 0, summing to 1 along the last dim)")
    r = _tensor("rewards", rewards)
    _same_shape(("ref_probs", "rewards"), (p, r))
    return torch.softmax(torch.log(p) + r / _beta(beta), dim=-1)
