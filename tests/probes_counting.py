"""Bad-input probes of llmbook.counting's Chapter 9 functions (collected by
tests/test_bad_input.py; the Chapter 6 functions are probed there)."""

from llmbook import counting
from llmbook.gpt import GPTConfig


def _cfg():
    return GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=8)


PROBES = [
    ("llmbook.counting.training_flops", "n_tokens", lambda t: counting.training_flops(1e6, -1)),
    ("llmbook.counting.gpu_hours", "peak_flops", lambda t: counting.gpu_hours(1e20, 0)),
    (
        "llmbook.counting.model_flops_utilization",
        "tokens_per_second",
        lambda t: counting.model_flops_utilization(6e6, float("nan"), 1e12),
    ),
    (
        "llmbook.counting.saved_activation_bytes",
        "bytes_per_value",
        lambda t: counting.saved_activation_bytes(_cfg(), 1, 8, 0),
    ),
    (
        "llmbook.counting.zero_memory_per_rank",
        "n_ranks",
        lambda t: counting.zero_memory_per_rank(10, 0, 1),
    ),
    (
        "llmbook.counting.pipeline_bubble_fraction",
        "n_micro",
        lambda t: counting.pipeline_bubble_fraction(2, 0),
    ),
    (
        "llmbook.counting.ring_allreduce_seconds",
        "n_ranks",
        lambda t: counting.ring_allreduce_seconds(1, 0, 1),
    ),
    ("llmbook.counting.checkpoint_memory", "n_layer", lambda t: counting.checkpoint_memory(0, 1)),
]
