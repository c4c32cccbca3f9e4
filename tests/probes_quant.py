"""Bad-input probes of llmbook.quant (collected by tests/test_bad_input.py)."""

import torch

from llmbook import quant


def _w():
    return torch.linspace(-1, 1, 32).reshape(4, 8)


PROBES = [
    (
        "llmbook.quant.Quantized",
        "scheme",
        lambda t: quant.Quantized(
            torch.zeros(2, dtype=torch.int8), torch.ones(1), None, (2,), 4, "int4"
        ),
    ),
    ("llmbook.quant.quantize_absmax", "bits", lambda t: quant.quantize_absmax(_w(), 9)),
    (
        "llmbook.quant.quantize_zeropoint",
        "group_size",
        lambda t: quant.quantize_zeropoint(_w(), 4, group_size=3),
    ),
    ("llmbook.quant.quantize_nf4", "block_size", lambda t: quant.quantize_nf4(_w(), 0)),
    (
        "llmbook.quant.bits_per_parameter",
        "block_size",
        lambda t: quant.bits_per_parameter(4, 0),
    ),
    ("llmbook.quant.weight_bytes", "bits_per_param", lambda t: quant.weight_bytes(1e9, 0)),
    ("llmbook.quant.gptq_hessian", "x must", lambda t: quant.gptq_hessian(torch.ones(3))),
    (
        "llmbook.quant.quantize_gptq",
        "H must",
        lambda t: quant.quantize_gptq(_w(), torch.eye(4)),
    ),
    (
        "llmbook.quant.quantize_linears",
        "calibration",
        lambda t: quant.quantize_linears(torch.nn.Linear(2, 2), "gptq", 4),
    ),
]

NO_ARGUMENTS = {"llmbook.quant.nf4_codebook", "llmbook.quant.Quantized.dequantize"}
