"""Bad-input probes of llmbook.decoding (joined into tests/test_bad_input.py)."""

import math

import torch

from llmbook import decoding

IDS = torch.zeros(1, 2, dtype=torch.long)
Z = torch.zeros(1, 4)

PROBES = [
    ("llmbook.decoding.Temperature", "temperature", lambda t: decoding.Temperature(0.0)),
    ("llmbook.decoding.TopK", "top_k", lambda t: decoding.TopK(0)),
    ("llmbook.decoding.TopP", "top_p", lambda t: decoding.TopP(1.5)),
    ("llmbook.decoding.MinP", "min_p", lambda t: decoding.MinP(-0.5)),
    ("llmbook.decoding.Typical", "mass", lambda t: decoding.Typical(0.0)),
    ("llmbook.decoding.RepetitionPenalty", "penalty", lambda t: decoding.RepetitionPenalty(0)),
    (
        "llmbook.decoding.FrequencyPresencePenalty",
        "frequency",
        lambda t: decoding.FrequencyPresencePenalty(frequency=-1.0),
    ),
    ("llmbook.decoding.NoRepeatNGram", "ngram_size", lambda t: decoding.NoRepeatNGram(0)),
    ("llmbook.decoding.ProcessorList", "processors", lambda t: decoding.ProcessorList(3)),
    ("llmbook.decoding.compose", r"processors\[0\]", lambda t: decoding.compose("top_k")),
    (
        "llmbook.decoding.probabilities",
        "scores",
        lambda t: decoding.probabilities(torch.full((1, 3), -math.inf)),
    ),
    ("llmbook.decoding.sample_next", "generator", lambda t: decoding.sample_next(Z, 1)),
    ("llmbook.decoding.greedy_next", "scores", lambda t: decoding.greedy_next(Z[0])),
    ("llmbook.decoding.TopK", "input_ids", lambda t: decoding.TopK(2)(IDS.float(), Z)),
]


def _tiny_gpt():
    from llmbook.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=8)).eval()


def _filled_cache():
    from llmbook.attention import KVCache

    cache = KVCache(4)
    cache.update(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    return cache


PROBES += [
    (
        "llmbook.decoding.generate",
        "input_ids",
        lambda t: decoding.generate(_tiny_gpt(), torch.zeros(1, 0, dtype=torch.long), 2),
    ),
    (
        "llmbook.decoding.generate",
        "block_size",
        lambda t: decoding.generate(_tiny_gpt(), torch.zeros(1, 9, dtype=torch.long), 2),
    ),
    (
        "llmbook.decoding.beam_search",
        "num_beams",
        lambda t: decoding.beam_search(_tiny_gpt(), IDS, 2, 0),
    ),
    (
        "llmbook.decoding.beam_search",
        "early_stopping",
        lambda t: decoding.beam_search(_tiny_gpt(), IDS, 2, 2, early_stopping="soon"),
    ),
    (
        "llmbook.decoding.BeamSearchOutput",
        "scores",
        lambda t: decoding.BeamSearchOutput(IDS, torch.zeros(3), torch.zeros(1).long()),
    ),
    (
        "llmbook.attention.KVCache.reorder",
        "beam_idx",
        lambda t: _filled_cache().reorder(torch.tensor([2])),
    ),
]
PROBES.append(
    ("llmbook.decoding.repeated_ngram_rate", "n", lambda t: decoding.repeated_ngram_rate(IDS, 0))
)
