"""Tests of llmbook.precision: number formats, underflow, dynamic loss scaling.

The loss scaler is compared with ``torch.amp.GradScaler("cpu")`` step by step: the scale
sequence and the skipped steps must be identical (exact: powers of two), and the
parameters after SGD steps equal to float32 round-off (1e-6 relative).
"""

import pytest
import torch

from llmbook.precision import (
    FLOAT32_ADAM_BYTES,
    MIXED_PRECISION_ADAM_BYTES,
    LossScaler,
    format_info,
    underflow_fractions,
)


def test_format_info_known_values():
    f16, bf16, f32 = (format_info(d) for d in (torch.float16, torch.bfloat16, torch.float32))
    assert f16["max"] == 65504 and f16["smallest_subnormal"] == 2.0**-24
    assert f16["smallest_normal"] == 2.0**-14 and f16["eps"] == 2.0**-10
    assert bf16["eps"] == 2.0**-7 and bf16["smallest_normal"] == f32["smallest_normal"]
    assert bf16["max"] == pytest.approx(f32["max"], rel=0.01)
    # the subnormal really is the smallest positive value: half of it rounds to 0
    tiny = torch.tensor(f16["smallest_subnormal"], dtype=torch.float16)
    assert tiny > 0 and (tiny / 2) == 0


def test_underflow_fractions():
    x = torch.tensor([1.0, 1e-3, 1e-6, 1e-9, 1e6, 0.0, float("inf")])
    u = underflow_fractions(x, torch.float16)
    assert u == {"zero": 1 / 5, "subnormal": 1 / 5, "overflow": 1 / 5}
    assert underflow_fractions([x, x], torch.bfloat16) == {
        "zero": 0.0,
        "subnormal": 0.0,
        "overflow": 0.0,
    }


def _run(scaler_kind, bad_steps, n_steps=14, interval=3):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.SGD([w], lr=0.1)
    if scaler_kind == "torch":
        sc = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=interval)
    else:
        sc = LossScaler(init_scale=2.0**10, growth_interval=interval)
    scales, skipped = [], []
    for s in range(n_steps):
        before = w.detach().clone()
        loss = (w**2).sum()
        (sc.scale(loss) if scaler_kind == "torch" else sc.scale_loss(loss)).backward()
        if s in bad_steps:
            w.grad[1] = float("inf") if s % 2 else float("nan")
        if scaler_kind == "torch":
            sc.step(opt)
            sc.update()
            scales.append(sc.get_scale())
        else:
            sc.step(opt, [w])
            scales.append(sc.update())
        skipped.append(torch.equal(before, w.detach()))
        opt.zero_grad()
    return scales, skipped, w.detach()


@pytest.mark.parametrize("bad", [set(), {0}, {2, 3, 9}, {1, 2, 3, 4}])
def test_loss_scaler_equals_torch_grad_scaler(bad):
    s1, k1, w1 = _run("torch", bad)
    s2, k2, w2 = _run("ours", bad)
    assert s1 == s2 and k1 == k2
    assert torch.allclose(w1, w2, rtol=1e-6, atol=0)
    assert sum(k1) == len(bad)  # exactly the poisoned steps are skipped


def test_loss_scaler_grows_and_backs_off():
    sc = LossScaler(init_scale=8.0, growth_interval=2)
    sc.found_inf = False
    assert [sc.update() for _ in range(4)] == [8.0, 16.0, 16.0, 32.0]
    sc.found_inf = True
    assert sc.update() == 16.0 and sc.clean_steps == 0


def test_bytes_per_parameter():
    assert sum(MIXED_PRECISION_ADAM_BYTES.values()) == 16 == sum(FLOAT32_ADAM_BYTES.values())


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: format_info(torch.int32), "dtype"),
        (lambda: underflow_fractions(torch.zeros(3), torch.float16), "nonzero"),
        (lambda: underflow_fractions([torch.ones(2, dtype=torch.int64)], torch.float16), "values"),
        (lambda: LossScaler(backoff_factor=1.5), "backoff_factor"),
        (lambda: LossScaler().scale_loss(torch.ones(2)), "loss"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
