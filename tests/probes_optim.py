"""Bad-input probes of llmbook.optim (joined into tests/test_bad_input.py)."""

import torch

from llmbook import optim


def _p():
    return [torch.nn.Parameter(torch.zeros(2))]


def _sam():
    return optim.SAM(_p())


PROBES = [
    ("llmbook.optim.SGD", "momentum", lambda t: optim.SGD(_p(), momentum=1.0)),
    ("llmbook.optim.SGD.step", "closure", lambda t: optim.SGD(_p()).step(closure=5)),
    ("llmbook.optim.Adam", "betas", lambda t: optim.Adam(_p(), betas=(0.9,))),
    ("llmbook.optim.Adam.step", "closure", lambda t: optim.Adam(_p()).step(closure="x")),
    ("llmbook.optim.AdamW.step", "closure", lambda t: optim.AdamW(_p()).step(closure=2)),
    ("llmbook.optim.AdamW", "weight_decay", lambda t: optim.AdamW(_p(), weight_decay=-1)),
    ("llmbook.optim.Adam8bit", "min_8bit_size", lambda t: optim.Adam8bit(_p(), min_8bit_size=-1)),
    ("llmbook.optim.Adam8bit.step", "closure", lambda t: optim.Adam8bit(_p()).step(closure=1)),
    ("llmbook.optim.SAM", "rho", lambda t: optim.SAM(_p(), rho=-0.1)),
    ("llmbook.optim.SAM.step", "closure", lambda t: _sam().step()),
    ("llmbook.optim.SAM.first_step", "gradients", lambda t: _sam().first_step()),
    ("llmbook.optim.clip_grad_norm", "params", lambda t: optim.clip_grad_norm(5, 1.0)),
    ("llmbook.optim.constant", "lr", lambda t: optim.constant(0, lr=-1.0)),
    (
        "llmbook.optim.warmup_cosine",
        "offset",
        lambda t: optim.warmup_cosine(
            0, peak_lr=1.0, min_lr=0.0, warmup_steps=1, total_steps=2, offset=2
        ),
    ),
    ("llmbook.optim.inverse_sqrt", "warmup_steps", lambda t: optim.inverse_sqrt(1, warmup_steps=0)),
    (
        "llmbook.optim.warmup_stable_decay",
        "decay_steps",
        lambda t: optim.warmup_stable_decay(
            0, peak_lr=1.0, warmup_steps=1, stable_steps=1, decay_steps=0
        ),
    ),
    ("llmbook.optim.dynamic_map", "signed", lambda t: optim.dynamic_map("yes")),
    (
        "llmbook.quant.quantize_blockwise",
        "block_size",
        lambda t: optim.quantize_blockwise(torch.ones(4), optim.dynamic_map(), block_size=0),
    ),
    (
        "llmbook.quant.dequantize_blockwise",
        "shape",
        lambda t: optim.dequantize_blockwise(
            torch.zeros(4, dtype=torch.uint8), torch.ones(1), optim.dynamic_map(), (5,)
        ),
    ),
    ("llmbook.optim.optimizer_state_bytes", "optimizer", lambda t: optim.optimizer_state_bytes([])),
]

NO_ARGUMENTS = {"llmbook.optim.SAM.second_step"}
