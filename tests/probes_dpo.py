"""Bad-input probes of llmbook.dpo (tests/test_bad_input.py runs them)."""

import types

import torch

from llmbook.dpo import DPOHistory, bandit_dpo_loss, dpo_train, reference_logprobs, zoo_dpo
from llmbook.gpt import GPT, GPTConfig
from llmbook.plotting import plot_reward_kl
from llmbook.train import TrainConfig


def _gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8))


_P = torch.tensor([0.5, 0.5])
_R = torch.tensor([1.0, 0.0])
_CFG = TrainConfig(max_steps=1, batch_size=2, block_size=8, warmup_steps=0)
_RECIPE = types.SimpleNamespace(task_args={"beta": 0.0, "n_prompts": 4})

PROBES = [
    ("llmbook.dpo.bandit_dpo_loss", "beta", lambda t: bandit_dpo_loss(_P.log(), _P, _R, 0.0)),
    (
        "llmbook.dpo.bandit_dpo_loss",
        "ref_probs",
        lambda t: bandit_dpo_loss(_P.log(), torch.tensor([0.0, 1.0]), _R, 0.1),
    ),
    (
        "llmbook.dpo.bandit_dpo_loss",
        "logits",
        lambda t: bandit_dpo_loss(torch.zeros(2, 2), _P, _R, 0.1),
    ),
    ("llmbook.dpo.DPOHistory", "losses must be a list", lambda t: DPOHistory(losses=(1.0,))),
    (
        "llmbook.dpo.reference_logprobs",
        "reference must be",
        lambda t: reference_logprobs(None, None),
    ),
    (
        "llmbook.dpo.reference_logprobs",
        "prefs must be",
        lambda t: reference_logprobs(_gpt(), [1, 2]),
    ),
    ("llmbook.dpo.dpo_train", "policy must be", lambda t: dpo_train(None, _gpt(), None, _CFG)),
    (
        "llmbook.dpo.dpo_train",
        "different models",
        lambda t: (lambda m: dpo_train(m, m, None, _CFG))(_gpt()),
    ),
    (
        "llmbook.dpo.zoo_dpo",
        "beta",
        lambda t: zoo_dpo(_RECIPE, None, torch.device("cpu"), False),
    ),
    ("llmbook.plotting.plot_reward_kl", "methods must be", lambda t: plot_reward_kl({})),
]

NO_ARGUMENTS = {"llmbook.dpo.DPOHistory.to_dict"}
