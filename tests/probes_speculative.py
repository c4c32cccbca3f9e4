"""Bad-input probes of llmbook.speculative, and of KVCache.truncate (which speculative
decoding added to llmbook.attention); collected by tests/test_bad_input.py."""

import torch

from llmbook import attention, speculative
from llmbook.gpt import GPT, GPTConfig


def _gpt(V=5):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, d_model=8))


def _p():
    return torch.full((2, 3), 1 / 3)


PROBES = [
    ("llmbook.attention.KVCache.truncate", "length", lambda t: attention.KVCache(4).truncate(1)),
    (
        "llmbook.speculative.SpeculativeStats",
        "accepted",
        lambda t: speculative.SpeculativeStats(accepted=-1),
    ),
    (
        "llmbook.speculative.Verdict",
        "n_accepted",
        lambda t: speculative.Verdict(torch.tensor([1]), 1, torch.ones(1)),
    ),
    (
        "llmbook.speculative.acceptance_rate",
        "p and q",
        lambda t: speculative.acceptance_rate(_p(), _p()[:1]),
    ),
    (
        "llmbook.speculative.expected_tokens_per_call",
        "alpha",
        lambda t: speculative.expected_tokens_per_call(-0.1, 3),
    ),
    (
        "llmbook.speculative.residual_distribution",
        "q",
        lambda t: speculative.residual_distribution(_p(), "q"),
    ),
    (
        "llmbook.speculative.speculative_generate",
        "draft",
        lambda t: speculative.speculative_generate(_gpt(), _gpt(6), torch.tensor([[0]]), 2),
    ),
    (
        "llmbook.speculative.verify",
        "draft_tokens",
        lambda t: speculative.verify(torch.tensor([0.5]), _p()[:1], _p()),
    ),
]
