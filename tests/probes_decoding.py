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
