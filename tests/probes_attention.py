"""Bad-input probes of llmbook.attention added after Chapter 5 (collected by
tests/test_bad_input.py; the Chapter 5 probes are in that file)."""

import torch

from llmbook import attention


def _qkv():
    return [torch.zeros(1, 2, 4, 8) for _ in range(3)]


PROBES = [
    (
        "llmbook.attention.tiled_attention",
        "block_q",
        lambda t: attention.tiled_attention(*_qkv(), block_q=0),
    ),
    (
        "llmbook.attention.tiled_attention",
        "block_k",
        lambda t: attention.tiled_attention(*_qkv(), block_k=1.5),
    ),
]
