"""Bad-input probes of llmbook.alignment (collected by tests/test_bad_input.py)."""

import torch

from llmbook import alignment as al


def _x(*shape):
    return torch.zeros(*shape)


def _lm():
    """logits (1, 4, 5), ids (1, 4), a response mask over the last two tokens."""
    return torch.zeros(1, 4, 5), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1]])


def _rows(n=2):
    return torch.ones(2, n)


PROBES = [
    ("llmbook.alignment.masked_sum", "mask is empty", lambda t: al.masked_sum(_x(3), _x(3))),
    (
        "llmbook.alignment.masked_mean",
        "mask must have the shape",
        lambda t: al.masked_mean(_x(3), _x(2)),
    ),
    (
        "llmbook.alignment.masked_whiten",
        "mask must hold only 0 and 1",
        lambda t: al.masked_whiten(_x(3), torch.full((3,), 0.5)),
    ),
    (
        "llmbook.alignment.token_logprobs",
        "logits and input_ids are misaligned by one",
        lambda t: al.token_logprobs(_lm()[0][:, 1:], *_lm()[1:]),
    ),
    (
        "llmbook.alignment.sequence_logprobs",
        "response_mask is empty",
        lambda t: al.sequence_logprobs(*_lm()[:2], torch.zeros(1, 4)),
    ),
    (
        "llmbook.alignment.token_entropy",
        "logits",
        lambda t: al.token_entropy(torch.ones(3, 4).long()),
    ),
    (
        "llmbook.alignment.bradley_terry_loss",
        "r_chosen and r_rejected must have the same shape",
        lambda t: al.bradley_terry_loss(_x(3), _x(2)),
    ),
    (
        "llmbook.alignment.preference_accuracy",
        "r_chosen and r_rejected",
        lambda t: al.preference_accuracy(_x(3), _x(2)),
    ),
    ("llmbook.alignment.gae", "gamma", lambda t: al.gae(_x(1, 3), _x(1, 3), gamma=1.01)),
    (
        "llmbook.alignment.ppo_policy_loss",
        "clip_eps",
        lambda t: al.ppo_policy_loss(_x(2, 2), _x(2, 2), _x(2, 2), _rows(), clip_eps=0),
    ),
    (
        "llmbook.alignment.ppo_value_loss",
        "clip_eps",
        lambda t: al.ppo_value_loss(_x(2, 2), _x(2, 2), _x(2, 2), _rows(), clip_eps=-0.1),
    ),
    (
        "llmbook.alignment.kl_estimators",
        "logprobs and ref_logprobs",
        lambda t: al.kl_estimators(_x(2, 2), _x(2, 3)),
    ),
    (
        "llmbook.alignment.kl_penalised_rewards",
        "beta",
        lambda t: al.kl_penalised_rewards(_x(2), _x(2, 2), _x(2, 2), _rows(), beta=-1.0),
    ),
    (
        "llmbook.alignment.AdaptiveKLController",
        "init_beta",
        lambda t: al.AdaptiveKLController(0.0, 6.0, 10000),
    ),
    (
        "llmbook.alignment.AdaptiveKLController.update",
        "n_steps",
        lambda t: al.AdaptiveKLController(0.1, 6.0, 10000).update(1.0, 0),
    ),
    (
        "llmbook.alignment.group_advantages",
        "group_size",
        lambda t: al.group_advantages(_x(6), 4),
    ),
    (
        "llmbook.alignment.grpo_loss",
        "mask is empty in row 1",
        lambda t: al.grpo_loss(_x(2, 2), _x(2, 2), _x(2, 2), _x(2), torch.tensor([[1, 1], [0, 0]])),
    ),
    (
        "llmbook.alignment.implicit_rewards",
        "beta",
        lambda t: al.implicit_rewards(_x(2), _x(2), beta=0.0),
    ),
    (
        "llmbook.alignment.dpo_loss",
        "beta",
        lambda t: al.dpo_loss(_x(2), _x(2), _x(2), _x(2), beta=-0.1),
    ),
    (
        "llmbook.alignment.kl_regularised_optimum",
        "ref_probs",
        lambda t: al.kl_regularised_optimum(torch.tensor([0.5, 0.6]), _x(2), 1.0),
    ),
]
