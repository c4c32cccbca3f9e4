"""Bad-input probes of llmbook.longcontext (collected by tests/test_bad_input.py)."""

import random

import numpy as np
import torch

from llmbook import longcontext as lc
from llmbook.gpt import GPT, GPTConfig
from llmbook.positional import rope_frequencies
from llmbook.tokenizer import BPETokenizer


def _rope():
    cfg = GPTConfig(vocab_size=256, block_size=64, n_layer=1, n_head=2, d_model=16,
                    positional="rope")  # fmt: skip
    return GPT(cfg)


def _hay():
    return np.frombuffer(b"to be or not to be " * 20, dtype=np.uint8)


def _full_cache():
    cache = lc.StreamingKVCache(0, 2, rope_frequencies(4))
    cache.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    return cache


PROBES = [
    ("llmbook.longcontext.peak_tensor_memory", "fn", lambda t: lc.peak_tensor_memory(3)),
    (
        "llmbook.longcontext.StreamingKVCache",
        "freqs",
        lambda t: lc.StreamingKVCache(2, 4, torch.ones(2, 2)),
    ),
    (
        "llmbook.longcontext.StreamingKVCache.update",
        "one token at a time",
        lambda t: _full_cache().update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)),
    ),
    (
        "llmbook.longcontext.streaming_nll",
        "window",
        lambda t: lc.streaming_nll(_rope(), torch.arange(8), window=0),
    ),
    (
        "llmbook.longcontext.windowed_nll",
        "context",
        lambda t: lc.windowed_nll(_rope(), torch.arange(8), context=0),
    ),
    (
        "llmbook.longcontext.extend_context",
        "scaling",
        lambda t: lc.extend_context(_rope(), 128, scaling="stretch"),
    ),
    (
        "llmbook.longcontext.needle_batch",
        "block_size",
        lambda t: lc.needle_batch(_hay(), BPETokenizer(), 2, 10, rng=random.Random(0)),
    ),
    (
        "llmbook.longcontext.train_needle",
        "cfg",
        lambda t: lc.train_needle(_rope(), _hay(), None, BPETokenizer(), {"max_steps": 1}),
    ),
    (
        "llmbook.longcontext.needle_prompt",
        "depth",
        lambda t: lc.needle_prompt([1, 2], [3], [4], -0.5),
    ),
    (
        "llmbook.longcontext.needle_accuracy",
        "lengths",
        lambda t: lc.needle_accuracy(_rope(), BPETokenizer(), "to be " * 50, [], [0.5]),
    ),
]
