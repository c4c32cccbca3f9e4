"""Bad-input probes of llmbook.compress (collected by tests/test_bad_input.py)."""

import torch
from torch import nn

from llmbook import compress, gpt


def _gpt():
    torch.manual_seed(0)
    return gpt.GPT(gpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8))


def _z(*shape):
    return torch.zeros(*shape)


PROBES = [
    (
        "llmbook.compress.distillation_loss",
        "same shape",
        lambda t: compress.distillation_loss(_z(2, 5), _z(2, 4), torch.tensor([0, 1])),
    ),
    (
        "llmbook.compress.distillation_loss",
        "labels",
        lambda t: compress.distillation_loss(_z(2, 5), _z(2, 5), _z(2)),
    ),
    (
        "llmbook.compress.distillation_loss",
        "temperature",
        lambda t: compress.distillation_loss(_z(2, 5), _z(2, 5), torch.tensor([0, 1]), -1.0),
    ),
    (
        "llmbook.compress.distillation_loss",
        "alpha",
        lambda t: compress.distillation_loss(_z(2, 5), _z(2, 5), torch.tensor([0, 1]), 2.0, 1.5),
    ),
    ("llmbook.compress.magnitude_mask", "weight", lambda t: compress.magnitude_mask([1.0], 0.5)),
    ("llmbook.compress.magnitude_mask", "sparsity", lambda t: compress.magnitude_mask(_z(3), 2)),
    (
        "llmbook.compress.magnitude_prune",
        "sparsity",
        lambda t: compress.magnitude_prune(_gpt(), -1),
    ),
    (
        "llmbook.compress.magnitude_prune",
        "target_modules",
        lambda t: compress.magnitude_prune(_gpt(), 0.5, ["none"]),
    ),
    ("llmbook.compress.weight_sparsity", "model", lambda t: compress.weight_sparsity("gpt")),
    ("llmbook.compress.prune_heads", "heads", lambda t: compress.prune_heads(_gpt(), [(0, 2)])),
    ("llmbook.compress.prune_heads", "model", lambda t: compress.prune_heads(nn.Linear(2, 2), [])),
    ("llmbook.compress.neuron_scores", "model", lambda t: compress.neuron_scores(nn.Linear(2, 2))),
    ("llmbook.compress.prune_neurons", "fraction", lambda t: compress.prune_neurons(_gpt(), 1.5)),
]
