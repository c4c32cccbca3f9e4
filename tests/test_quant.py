"""Tests of llmbook.quant: round-to-nearest codes, NF4, storage arithmetic (Chapter 13)."""

from __future__ import annotations

import pytest
import torch

from llmbook import quant
from llmbook.quant import (
    bits_per_parameter,
    nf4_codebook,
    quantize_absmax,
    quantize_nf4,
    quantize_zeropoint,
    weight_bytes,
)

#: bitsandbytes' NF4 table (``functional.py``, ``get_4bit_type("nf4")``), as published.
PUBLISHED_NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]
GRANULARITIES = [{}, {"axis": 0}, {"axis": 1}, {"axis": -1}, {"group_size": 16}]
QUANTIZERS = [quantize_absmax, quantize_zeropoint]


def weights(rows: int = 32, cols: int = 64, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    row_scale = torch.exp(torch.randn(rows, 1, generator=g, dtype=torch.float64))
    return (torch.randn(rows, cols, generator=g, dtype=torch.float64) * row_scale).to(dtype)


def step_per_weight(q: quant.Quantized) -> torch.Tensor:
    """The scale of each weight, broadcast to the weights' shape."""
    if q.group_size is None:
        return q.scale.expand(q.shape)
    return q.scale.expand(*q.shape[:-1], -1, q.group_size).reshape(q.shape)


# ------------------------------------------------------------------------------ integer codes
@pytest.mark.parametrize("fn", QUANTIZERS)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("kw", GRANULARITIES)
def test_error_is_at_most_half_a_step_elementwise(fn, bits, kw):
    for dtype, tiny in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        w = weights(dtype=dtype)
        q = fn(w, bits, **kw)
        deq = q.dequantize()
        assert deq.dtype == dtype and deq.shape == w.shape
        s = step_per_weight(q)
        assert ((w - deq).abs() <= s / 2 * (1 + tiny) + tiny).all()


@pytest.mark.parametrize("bits", [4, 8])
def test_values_on_the_grid_come_back_exactly(bits):
    g = torch.Generator().manual_seed(1)
    step = 0.25  # a power of two: the grid is exact in floating point
    q_max = 2 ** (bits - 1) - 1
    k = torch.randint(-q_max, q_max + 1, (16, 32), generator=g)
    k[0, 0], k[0, 1] = q_max, -q_max  # the absmax is attained: the scale is `step`
    w = k.double() * step
    q = quantize_absmax(w, bits)
    assert q.scale.item() == step and torch.equal(q.codes.long(), k)
    assert torch.equal(q.dequantize(), w)
    # zero-point: codes 0..2^b - 1 around a zero point z
    z = 2 ** (bits - 1) - 3
    k = torch.randint(0, 2**bits, (16, 32), generator=g)
    k[0, 0], k[0, 1] = 0, 2**bits - 1
    w = (k - z).double() * step
    q = quantize_zeropoint(w, bits)
    assert q.scale.item() == step and q.zero_point.item() == z
    assert torch.equal(q.codes.long(), k) and torch.equal(q.dequantize(), w)


def test_rounding_ties_go_to_even_as_torch_round():
    w = torch.tensor([7.0, 0.5, 1.5, 2.5, -2.5, -7.0])  # bits 4: scale 7 / 7 = 1
    q = quantize_absmax(w, 4)
    assert q.codes.tolist() == [7, 0, 2, 2, -2, -7]
    assert torch.equal(q.codes.float(), torch.round(w))


@pytest.mark.parametrize("fn", QUANTIZERS)
def test_codes_have_the_smallest_integer_dtype_and_range(fn):
    w = weights()
    for bits in (2, 4, 8):
        q = fn(w, bits)
        if fn is quantize_absmax:
            assert q.codes.dtype == torch.int8 and q.zero_point is None
            assert q.codes.abs().max() <= 2 ** (bits - 1) - 1
        else:
            assert q.codes.dtype == torch.uint8 and q.zero_point.dtype == torch.uint8
            assert int(q.codes.max()) <= 2**bits - 1
        assert q.bits == bits and q.shape == tuple(w.shape)


@pytest.mark.parametrize("fn", QUANTIZERS)
def test_scale_shapes_and_finer_granularity_never_raises_the_step(fn):
    w = weights()
    per_tensor = fn(w, 4)
    assert per_tensor.scale.numel() == 1
    assert fn(w, 4, axis=0).scale.shape == (32, 1)
    assert fn(w, 4, axis=1).scale.shape == (1, 64)
    assert fn(w, 4, group_size=16).scale.shape == (32, 4, 1)
    for kw in GRANULARITIES[1:]:
        finer = fn(w, 4, **kw)
        assert (step_per_weight(finer) <= per_tensor.scale * (1 + 1e-6)).all()


@pytest.mark.parametrize("fn", QUANTIZERS)
def test_per_channel_and_groups_have_no_larger_errors_than_per_tensor(fn):
    w = weights()  # rows of very different magnitudes: per-row scales help a lot
    err = {
        name: (w - fn(w, 4, **kw).dequantize()).abs()
        for name, kw in [("tensor", {}), ("channel", {"axis": 0}), ("group", {"group_size": 16})]
    }
    assert err["channel"].max() <= err["tensor"].max()
    assert err["group"].max() <= err["tensor"].max()
    assert err["channel"].pow(2).mean() < 0.2 * err["tensor"].pow(2).mean()
    assert err["group"].pow(2).mean() <= err["channel"].pow(2).mean()


def test_zero_point_beats_absmax_on_all_positive_weights():
    g = torch.Generator().manual_seed(2)
    w = torch.rand(64, 64, generator=g, dtype=torch.float64) + 0.01  # all positive
    for bits in (4, 8):
        e_abs = (w - quantize_absmax(w, bits).dequantize()).pow(2).mean().sqrt()
        e_zp = (w - quantize_zeropoint(w, bits).dequantize()).pow(2).mean().sqrt()
        # all 2^b codes instead of half of them: steps (2^b - 1)/(2^(b-1) - 1) ~ 2x smaller
        ratio = (2**bits - 1) / (2 ** (bits - 1) - 1)
        assert e_abs / e_zp == pytest.approx(ratio, rel=0.1)


@pytest.mark.parametrize("fn", QUANTIZERS)
def test_symmetric_weights_round_trip_about_equally_well(fn):
    w = weights()
    q8, q4 = fn(w, 8, axis=0), fn(w, 4, axis=0)
    rel8 = ((w - q8.dequantize()).norm() / w.norm()).item()
    rel4 = ((w - q4.dequantize()).norm() / w.norm()).item()
    assert rel8 < 0.01 and rel4 < 0.2


@pytest.mark.parametrize(
    ("fn", "ratio"),
    [(quantize_absmax, 127 / 7), (quantize_zeropoint, 255 / 15)],
)
def test_int8_is_about_16x_more_precise_than_int4_on_uniform_weights(fn, ratio):
    """The RMS error is step / sqrt(12) for uniform weights, so the int4/int8 error ratio is
    the ratio of the steps: 127/7 ~ 18.1 (absmax) and 255/15 = 17 (zero-point), the "16x"
    of 4 more bits give or take the one code each scheme leaves over; tolerance 5%."""
    g = torch.Generator().manual_seed(3)
    w = torch.rand(256, 256, generator=g, dtype=torch.float64) * 2 - 1
    rms = {b: (w - fn(w, b).dequantize()).pow(2).mean().sqrt().item() for b in (4, 8)}
    assert rms[4] / rms[8] == pytest.approx(ratio, rel=0.05)
    assert 15 < rms[4] / rms[8] < 20


def test_all_zero_weights_and_half_precision_inputs():
    for fn in QUANTIZERS:
        z = torch.zeros(4, 8)
        assert torch.equal(fn(z, 4, axis=0).dequantize(), z)
        h = weights(4, 16).to(torch.bfloat16)
        d = fn(h, 8).dequantize()
        assert d.dtype == torch.bfloat16 and (d.float() - h.float()).abs().max() < 0.1
    assert torch.equal(quantize_nf4(torch.zeros(70)).dequantize(), torch.zeros(70))


# ------------------------------------------------------------------------------ NF4
def test_nf4_codebook_equals_the_published_table():
    code = nf4_codebook()
    published = torch.tensor(PUBLISHED_NF4, dtype=torch.float64)
    assert code.shape == (16,) and code.dtype == torch.float32
    assert (code.double() - published).abs().max() <= 1e-7
    assert torch.equal(code, published.float())  # in fact bit for bit
    assert code[0] == -1 and code[-1] == 1 and (code == 0).sum() == 1
    assert (code > 0).sum() == 8 and (code < 0).sum() == 7


def test_nf4_picks_the_nearest_codebook_entry_per_block():
    w = weights(8, 100, seed=4)  # 800 weights: 12 blocks of 64 and one of 32
    q = quantize_nf4(w, block_size=64)
    assert q.codes.dtype == torch.uint8 and q.codes.shape == w.shape and q.scale.shape == (13,)
    x = w.reshape(-1)
    s = torch.cat([x, x.new_zeros(32)]).reshape(-1, 64).abs().amax(1)
    assert torch.equal(q.scale, s)
    normed = x / s.repeat_interleave(64)[:800]
    nearest = (normed[:, None] - nf4_codebook()[None]).abs().argmin(1)
    assert torch.equal(q.codes.reshape(-1).long(), nearest)
    deq = q.dequantize()
    assert torch.equal(deq.reshape(-1), nf4_codebook()[nearest] * s.repeat_interleave(64)[:800])
    # each block's absmax is a codebook end (+-1): it comes back exactly
    at_max = x.abs() == s.repeat_interleave(64)[:800]
    assert at_max.sum() >= 13 and torch.equal(deq.reshape(-1)[at_max], x[at_max])


def test_nf4_beats_4_bit_absmax_on_normal_weights():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 256, generator=g)
    e_nf4 = (w - quantize_nf4(w, 64).dequantize()).pow(2).mean()
    e_int4 = (w - quantize_absmax(w, 4, group_size=64).dequantize()).pow(2).mean()
    assert e_nf4 < e_int4


# ------------------------------------------------------------------------------ storage
def test_bits_per_parameter_reproduces_qlora():
    assert bits_per_parameter(4, 64) == 4.5
    dq = bits_per_parameter(4, 64, double_quant_block=256)
    assert dq == 4 + 8 / 64 + 32 / (64 * 256) and round(dq, 3) == 4.127
    assert bits_per_parameter(8, 128, scale_bits=16) == 8.125
    assert weight_bytes(70e9, 4) == 35e9 and weight_bytes(70e9, 32) == 280e9


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: quantize_absmax(weights(), 1), "bits"),
        (lambda: quantize_absmax(weights(), 9), "bits"),
        (lambda: quantize_zeropoint(weights(), 4.0), "bits"),
        (lambda: quantize_absmax(weights(), 4, group_size=24), "group_size"),
        (lambda: quantize_absmax(weights(), 4, group_size=0), "group_size"),
        (lambda: quantize_zeropoint(weights(), 4, axis=2), "axis"),
        (lambda: quantize_zeropoint(weights(), 4, axis=-3), "axis"),
        (lambda: quantize_absmax(weights(), 4, axis=0, group_size=16), "axis and group_size"),
        (lambda: quantize_absmax(torch.arange(6), 4), "w must"),
        (lambda: quantize_absmax(torch.tensor([1.0, float("nan")]), 4), "w must"),
        (lambda: quantize_zeropoint(torch.tensor([1.0, float("inf")]), 4), "w must"),
        (lambda: quantize_absmax(torch.tensor(1.0), 4), "w must"),
        (lambda: quantize_nf4(torch.zeros(0), 64), "w must"),
        (lambda: quantize_nf4(weights(), 0), "block_size"),
        (lambda: bits_per_parameter(4, 0), "block_size"),
        (lambda: bits_per_parameter(4, 64, double_quant_block=0), "double_quant_block"),
        (lambda: weight_bytes(-1, 4), "n_params"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_numpy_integers_are_accepted():
    import numpy as np

    w = weights()
    a = quantize_absmax(w, np.int64(4), axis=np.int32(0)).dequantize()
    assert torch.equal(a, quantize_absmax(w, 4, axis=0).dequantize())


# ------------------------------------------------------------------------------ GPTQ
def correlated_inputs(N=256, d_in=32, seed=0):
    """Rows x = z A with a random mixing A: strongly correlated features, as in real
    activations (where GPTQ's error feedback pays)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)
    return torch.randn(N, d_in, generator=g, dtype=torch.float64) @ A


def gptq_plain(w, H, bits, group_size=None, damp=0.01):
    """The paper's column-by-column algorithm written from its equations, without the
    Cholesky trick or lazy blocks: quantise column j, move the others by
    -(w_j - q_j) [H^-1]_{j,:} / [H^-1]_{jj}, then remove j from H^-1 by Gaussian elimination."""
    W, H = w.clone(), H.clone()
    d_in = W.shape[1]
    H += damp * torch.diag(H).mean() * torch.eye(d_in, dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    Q = torch.zeros_like(W)
    grid = quantize_zeropoint(W, bits, axis=0)
    for j in range(d_in):
        if group_size is not None and j % group_size == 0:
            grid = quantize_zeropoint(W[:, j : j + group_size], bits, axis=0)
        s, z = grid.scale, grid.zero_point.double()
        q = s * ((torch.round(W[:, j : j + 1] / s) + z).clamp(0, 2**bits - 1) - z)
        Q[:, j] = q[:, 0]
        err = (W[:, j : j + 1] - q) / Hinv[j, j]
        W[:, j:] -= err * Hinv[j : j + 1, j:]
        Hinv = Hinv - Hinv[:, j : j + 1] @ Hinv[j : j + 1, :] / Hinv[j, j]
    return Q


def test_gptq_hessian_is_two_x_transpose_x_over_n():
    x = correlated_inputs(64, 8)
    H = quant.gptq_hessian(x.reshape(4, 16, 8))  # leading dimensions are flattened
    torch.testing.assert_close(H, 2 * x.T @ x / 64, rtol=1e-14, atol=0)
    assert H.dtype == torch.float64


@pytest.mark.parametrize("group_size", [None, 8])
@pytest.mark.parametrize("block_size", [128, 8, 16])
def test_gptq_lazy_blocks_equal_the_plain_column_by_column_algorithm(block_size, group_size):
    x = correlated_inputs()
    w = torch.randn(12, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    H = quant.gptq_hessian(x)
    q = quant.quantize_gptq(w, H, 3, group_size=group_size, block_size=block_size)
    # float64 round-off only: the two compute the same updates in another order
    torch.testing.assert_close(q.dequantize(), gptq_plain(w, H, 3, group_size), rtol=0, atol=1e-10)
    assert not torch.allclose(q.dequantize(), quantize_zeropoint(w, 3, axis=0).dequantize())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [None, 8])
def test_gptq_has_a_smaller_output_error_than_round_to_nearest(bits, group_size, symmetric):
    x = correlated_inputs(seed=2)
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = quant.quantize_gptq(
        w, quant.gptq_hessian(x), bits, group_size=group_size, symmetric=symmetric
    )
    rtn = (quantize_absmax if symmetric else quantize_zeropoint)(
        w, bits, axis=None if group_size else 0, group_size=group_size
    )
    err_gptq = torch.linalg.norm(x @ (w - q.dequantize()).T)
    err_rtn = torch.linalg.norm(x @ (w - rtn.dequantize()).T)
    assert err_gptq < 0.8 * err_rtn  # measured about 0.3-0.6; a clear margin
    # ... while its weight error is larger: it trades weight error for output error
    assert torch.linalg.norm(w - q.dequantize()) > torch.linalg.norm(w - rtn.dequantize())
    assert q.codes.shape == w.shape and q.scheme == ("absmax" if symmetric else "zeropoint")


def test_gptq_on_one_column_is_round_to_nearest():
    w = torch.randn(6, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = correlated_inputs(16, 1)
    for bits in (2, 4, 8):
        q = quant.quantize_gptq(w, quant.gptq_hessian(x), bits)
        ref = quantize_zeropoint(w, bits, axis=0)
        assert torch.equal(q.codes, ref.codes) and torch.equal(q.dequantize(), ref.dequantize())


def test_gptq_zeroes_columns_whose_input_is_always_zero():
    x = correlated_inputs(64, 8)
    x[:, 3] = 0
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    q = quant.quantize_gptq(w, quant.gptq_hessian(x), 4).dequantize()
    assert torch.all(q[:, 3] == 0) and not torch.all(q[:, 2] == 0)


def tiny_gpt():
    from llmbook.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, d_model=16)).eval()


def test_quantize_linears_rtn_nf4_and_sequential_gptq_on_a_gpt():
    import copy

    model = tiny_gpt()
    calib = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(calib)[0]
    errors = {}
    for method, bits in (("rtn", 4), ("gptq", 4), ("nf4", 4), ("rtn", 8)):
        m = copy.deepcopy(model)
        codes = quant.quantize_linears(m, method, bits, calibration=calib)
        assert "lm_head" not in codes and len(codes) == 2 * 6  # q, k, v, out, fc, proj
        assert torch.equal(m.lm_head.weight, model.lm_head.weight)  # the head is kept
        name = "blocks.1.mlp.fc"
        w = model.get_submodule(name).weight
        torch.testing.assert_close(m.get_submodule(name).weight, codes[name].dequantize())
        if method == "rtn":
            assert torch.equal(codes[name].codes, quantize_zeropoint(w, bits, axis=0).codes)
        with torch.no_grad():
            errors[method, bits] = float((m(calib)[0] - ref).pow(2).mean())
    assert errors["gptq", 4] < errors["rtn", 4]
    assert errors["rtn", 8] < errors["rtn", 4] / 50  # ~16x finer steps, error ~256x smaller


def test_quantize_linears_and_gptq_bad_input():
    model, w = tiny_gpt(), torch.randn(4, 8)
    with pytest.raises(ValueError, match="calibration"):
        quant.quantize_linears(model, "gptq", 4)
    with pytest.raises(ValueError, match="method"):
        quant.quantize_linears(model, "awq", 4)
    with pytest.raises(ValueError, match="bits"):
        quant.quantize_linears(model, "nf4", 3)
    with pytest.raises(ValueError, match="H must"):
        quant.quantize_gptq(w, torch.eye(4))
    with pytest.raises(ValueError, match="group_size"):
        quant.quantize_gptq(w, torch.eye(8), group_size=3)
    with pytest.raises(ValueError, match="positive definite"):
        quant.quantize_gptq(w, -torch.eye(8), damp=0.0)
    with pytest.raises(ValueError, match="x must"):
        quant.gptq_hessian(torch.ones(5))
