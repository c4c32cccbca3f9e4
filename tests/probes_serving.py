"""Bad-input probes of llmbook.serving (collected by tests/test_bad_input.py)."""

import numpy as np
import torch

from llmbook import serving
from llmbook.gpt import GPT, GPTConfig


def _cfg():
    return GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=8)


def _cost():
    return serving.CostModel(1.0, 0.0, 1.0, 0.0)


def _trace():
    return serving.Trace([0.0, 1.0], [1, 2], [2, 1])


PROBES = [
    ("llmbook.serving.matmul_flops_per_s", "n", lambda t: serving.matmul_flops_per_s(0)),
    ("llmbook.serving.memory_bandwidth", "n_bytes", lambda t: serving.memory_bandwidth(-1)),
    (
        "llmbook.serving.memory_bandwidth",
        "clock",
        lambda t: serving.memory_bandwidth(64, clock=1.0),
    ),
    ("llmbook.serving.roofline", "bandwidth", lambda t: serving.roofline(1.0, 1e9, 0.0)),
    (
        "llmbook.serving.step_cost",
        "new_tokens",
        lambda t: serving.step_cost(_cfg(), batch=1, new_tokens=0),
    ),
    (
        "llmbook.serving.decode_step_seconds",
        "n_new",
        lambda t: serving.decode_step_seconds(GPT(_cfg()), torch.zeros(1, 2).long(), 0),
    ),
    (
        "llmbook.serving.measure_step_costs",
        "context",
        lambda t: serving.measure_step_costs(
            GPT(_cfg()), prefill_shapes=[(1, 2)], decode_batches=[1], context=0
        ),
    ),
    ("llmbook.serving.CostModel", "prefill_base", lambda t: serving.CostModel(-1.0, 0, 1, 0)),
    ("llmbook.serving.CostModel.prefill_time", "n_tokens", lambda t: _cost().prefill_time(0)),
    ("llmbook.serving.CostModel.decode_time", "batch", lambda t: _cost().decode_time(1.5)),
    (
        "llmbook.serving.fit_cost_model",
        "prefill",
        lambda t: serving.fit_cost_model([1], [1.0], [1, 2], [1.0, 2.0]),
    ),
    ("llmbook.serving.Trace", "prompt_len", lambda t: serving.Trace([0.0], [1.5], [1])),
    ("llmbook.serving.poisson_arrivals", "rate", lambda t: serving.poisson_arrivals(3, 0.0)),
    ("llmbook.serving.percentiles", "x", lambda t: serving.percentiles(np.array([np.nan]))),
    (
        "llmbook.serving.ServingResult",
        "first_token",
        lambda t: serving.ServingResult("static", _trace(), np.zeros(3), np.zeros(2)),
    ),
    (
        "llmbook.serving.simulate",
        "policy",
        lambda t: serving.simulate(_trace(), _cost(), policy="fifo", max_batch=2),
    ),
]

NO_ARGUMENTS = {"llmbook.serving.ServingResult.summary"}
