"""Bad-input probes of llmbook.precision (collected by tests/test_bad_input.py)."""

import torch

from llmbook import precision

PROBES = [
    ("llmbook.precision.format_info", "dtype", lambda t: precision.format_info("fp16")),
    (
        "llmbook.precision.underflow_fractions",
        "values",
        lambda t: precision.underflow_fractions([[1.0]], torch.float16),
    ),
    (
        "llmbook.precision.LossScaler",
        "growth_interval",
        lambda t: precision.LossScaler(growth_interval=0),
    ),
    (
        "llmbook.precision.LossScaler.scale_loss",
        "loss",
        lambda t: precision.LossScaler().scale_loss(1.0),
    ),
    (
        "llmbook.precision.LossScaler.unscale_",
        "params",
        lambda t: precision.LossScaler().unscale_([1.0]),
    ),
    (
        "llmbook.precision.LossScaler.step",
        "optimizer",
        lambda t: precision.LossScaler().step("sgd", []),
    ),
]
NO_ARGUMENTS = {"llmbook.precision.LossScaler.update"}
