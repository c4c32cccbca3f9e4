"""Tests of llmbook.optim: optimisers, 8-bit states, SAM, clipping and schedules (Chapter 8).

Tolerances. SGD, Adam and AdamW are compared with ``torch.optim`` over 100 steps of a small
float64 MLP at relative 1e-12 (the same formulas; float64 round-off is ~1e-16 per
operation, and the few operations ordered differently stay far below 1e-12). Adam and
AdamW in float32 must be *bit-identical* to torch's foreach implementation (torch.equal),
since they replay its operations in the same order. Clipping is compared with
``torch.nn.utils.clip_grad_norm_`` exactly (the same operations). Schedules are compared
with transformers' and torch's at relative 1e-12 (products grouped differently, ~1e-16).
8-bit quantisation is checked against its analytic error bound: half the largest gap of
the code map, times the block's maximum.
"""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    get_cosine_with_min_lr_schedule_with_warmup,
    get_inverse_sqrt_schedule,
    get_wsd_schedule,
)

from llmbook import optim
from llmbook.optim import (
    SAM,
    SGD,
    Adam,
    Adam8bit,
    AdamW,
    clip_grad_norm,
    constant,
    dequantize_blockwise,
    dynamic_map,
    inverse_sqrt,
    optimizer_state_bytes,
    quantize_blockwise,
    warmup_cosine,
    warmup_stable_decay,
)


def mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def batches(dtype=torch.float64, n=100):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 6, generator=g, dtype=dtype), torch.randn(8, 3, generator=g, dtype=dtype))
        for _ in range(n)
    ]


def run(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def assert_rel(a_list, b_list, rtol):
    for a, b in zip(a_list, b_list, strict=True):
        assert ((a - b).norm() / b.norm()).item() <= rtol


SGD_CASES = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_trajectory_equals_torch(kw):
    data = batches()
    ours, ref = mlp(), mlp()
    a = run(ours, SGD(ours.parameters(), **kw), data)
    b = run(ref, torch.optim.SGD(ref.parameters(), foreach=True, **kw), data)
    assert_rel(a, b, 1e-12)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(a, mlp().parameters(), strict=True))


@pytest.mark.parametrize(
    "ours_cls, torch_cls, kw",
    [
        (Adam, torch.optim.Adam, dict(lr=1e-2)),
        (Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=0.05)),
        (AdamW, torch.optim.AdamW, dict(lr=1e-2)),
        (AdamW, torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1)),
    ],
)
def test_adam_trajectories_equal_torch(ours_cls, torch_cls, kw):
    data = batches()
    ours, ref = mlp(), mlp()
    a = run(ours, ours_cls(ours.parameters(), **kw), data)
    b = run(ref, torch_cls(ref.parameters(), foreach=True, **kw), data)
    assert_rel(a, b, 1e-12)
    # float32: bit-identical to the foreach implementation
    data32 = batches(torch.float32, 30)
    ours, ref = mlp(torch.float32), mlp(torch.float32)
    a = run(ours, ours_cls(ours.parameters(), **kw), data32)
    b = run(ref, torch_cls(ref.parameters(), foreach=True, **kw), data32)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_adamw_state_dict_moves_to_and_from_torch():
    data = batches(torch.float32, 5)
    ours = mlp(torch.float32)
    opt = AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1)
    run(ours, opt, data)
    ref = copy.deepcopy(ours)
    topt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, foreach=True)
    topt.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch would share the tensors
    for group in topt.param_groups:  # our groups lack torch's flags; None means single-tensor
        group["foreach"] = True
    assert set(topt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    more = batches(torch.float32, 10)[5:]
    a, b = run(ours, opt, more), run(ref, topt, more)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_parameters_without_gradient_are_left_alone():
    w, frozen = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    for cls in (SGD, Adam, AdamW, Adam8bit):
        opt = cls([w, frozen], lr=0.1)
        w.grad = torch.ones(3)
        opt.step()
        assert torch.equal(frozen.detach(), torch.ones(3)) and frozen not in opt.state


def test_step_returns_the_closure_loss():
    model = mlp()
    x, y = batches(n=1)[0]
    opt = AdamW(model.parameters())

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    assert opt.step(closure).item() > 0


# ------------------------------------------------------------------------ 8-bit states
def test_dynamic_map_is_the_published_one():
    signed, unsigned = dynamic_map(True), dynamic_map(False)
    for code in (signed, unsigned):
        assert code.shape == (256,) and bool((code[1:] > code[:-1]).all())
        assert code.max() == 1.0 and (code == 0).sum() == 1
    assert signed.min() < -0.99 and unsigned.min() == 0.0
    # smallest non-zero magnitude: 10^-6 times the mean of the first fraction interval
    assert unsigned[1].item() == pytest.approx(1e-6 * 0.325, rel=1e-6)
    assert signed[signed > 0].min().item() == pytest.approx(1e-6 * 0.55, rel=1e-6)
    # bitsandbytes' map is symmetric apart from +1.0
    assert torch.allclose(-signed[:127].flip(0), signed[128:255], rtol=0, atol=0)


@pytest.mark.parametrize("signed", [True, False])
def test_quantize_round_trip_within_half_a_gap(signed):
    code = dynamic_map(signed)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, generator=g) * torch.logspace(-4, 0, 5000)
    x = x if signed else x.abs()
    q, absmax = quantize_blockwise(x, code, block_size=256)
    assert q.dtype == torch.uint8 and q.shape == (5000,) and absmax.shape == (20,)
    back = dequantize_blockwise(q, absmax, code, x.shape, block_size=256)
    # nearest-code error: half the widest gap, or the distance from -1 to the most
    # negative code (the signed map has +1 but not -1)
    gap = max((code[1:] - code[:-1]).max().item(), 2 * (1 + code.min().item()))
    scale = absmax.repeat_interleave(256)[:5000]
    assert bool(((back - x).abs() <= gap / 2 * scale * (1 + 1e-5)).all())  # float32 slack
    # the nearest code: no other code is closer
    normed = x / scale
    best = (normed[:, None] - code[None, :]).abs().argmin(1)
    assert bool(((code[best] - normed).abs() >= (code[q.long()] - normed).abs() - 1e-7).all())
    assert back.max() == x.max()  # the largest positive value is exact (code 1.0)


def test_adam8bit_tracks_fp32_adam_and_stores_two_bytes_per_parameter():
    torch.manual_seed(0)
    w_ref = torch.randn(64, 128)
    ours, ref = nn.Parameter(w_ref.clone()), nn.Parameter(w_ref.clone())
    opt8 = Adam8bit([ours], lr=1e-3)
    opt32 = torch.optim.Adam([ref], lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        grad = torch.randn(64, 128, generator=g) + 0.5
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt8.step()
        opt32.step()
    moved = (ref - w_ref).norm()
    assert ((ours - ref).norm() / moved).item() < 0.02  # measured 0.004
    assert optimizer_state_bytes(opt8) == 2 * 8192 + 2 * 4 * 4  # codes + 4 blocks x 2
    assert optimizer_state_bytes(opt32) == 8 * 8192


def test_adam8bit_keeps_small_tensors_in_fp32_and_decays_weights():
    b = nn.Parameter(torch.ones(10))
    opt = Adam8bit([b], lr=0.1, weight_decay=0.5)
    b.grad = torch.zeros(10)
    opt.step()
    assert set(opt.state[b]) == {"step", "exp_avg", "exp_avg_sq"}
    torch.testing.assert_close(b.detach(), torch.full((10,), 1 - 0.1 * 0.5))


# ---------------------------------------------------------------------------------- SAM
def test_sam_step_is_the_base_step_with_the_gradient_at_the_perturbed_point():
    model, ref = mlp(), mlp()
    x, y = batches(n=1)[0]
    rho, lr = 0.1, 0.05
    opt = SAM(model.parameters(), SGD, rho=rho, lr=lr, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    # by hand: climb along g/|g| by rho, take the gradient there, step from the start
    params = list(ref.parameters())
    g = torch.autograd.grad(nn.functional.mse_loss(ref(x), y), params)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(params, g, strict=True):
            p.add_(rho * gi / norm)
    g_adv = torch.autograd.grad(nn.functional.mse_loss(ref(x), y), params)
    with torch.no_grad():
        for p, gi, ga in zip(params, g, g_adv, strict=True):
            p.sub_(rho * gi / norm).sub_(lr * ga)  # first momentum step: buffer = gradient
    assert loss.item() == pytest.approx(nn.functional.mse_loss(mlp()(x), y).item())
    assert_rel(list(model.parameters()), params, 1e-12)
    assert opt.param_groups is opt.base_optimizer.param_groups


# ------------------------------------------------------------------------------ clipping
@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e3])
def test_clip_grad_norm_equals_torch(max_norm):
    model, ref = mlp(torch.float32), mlp(torch.float32)
    x, y = batches(torch.float32, 1)[0]
    for m in (model, ref):
        (100 * nn.functional.mse_loss(m(x), y)).backward()
    n_ours = clip_grad_norm(model.parameters(), max_norm)
    n_ref = nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    assert torch.equal(n_ours, n_ref)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)
    total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert total.item() <= max_norm * (1 + 1e-6) or max_norm > n_ours.item()


# ----------------------------------------------------------------------------- schedules
def hf_lrs(make, steps, **kw):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=kw.pop("peak"))
    sched = make(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def close(a, b, rtol=1e-12):
    return all(math.isclose(x, y, rel_tol=rtol, abs_tol=1e-300) for x, y in zip(a, b, strict=True))


def test_warmup_cosine_equals_transformers():
    ref = hf_lrs(
        get_cosine_with_min_lr_schedule_with_warmup,
        101,
        peak=6e-4,
        num_warmup_steps=10,
        num_training_steps=100,
        min_lr=6e-5,
    )
    ours = [
        warmup_cosine(s, peak_lr=6e-4, min_lr=6e-5, warmup_steps=10, total_steps=100)
        for s in range(101)
    ]
    assert close(ours, ref)
    assert ours[0] == 0.0 and ours[10] == 6e-4 and ours[100] == pytest.approx(6e-5)
    # offset 1: the step being taken counts (llmbook.train's convention)
    shifted = [
        warmup_cosine(s, peak_lr=1.0, min_lr=0.0, warmup_steps=4, total_steps=8, offset=1)
        for s in range(4)
    ]
    assert shifted == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(1e12, peak_lr=1.0, min_lr=0.1, warmup_steps=0, total_steps=5) == 0.1


def test_warmup_cosine_decay_equals_torch_cosine_annealing():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.1)
    ref = []
    for _ in range(51):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [
        warmup_cosine(s, peak_lr=1.0, min_lr=0.1, warmup_steps=0, total_steps=50) for s in range(51)
    ]
    assert close(ours, ref, 1e-9)  # torch's recursive form rounds differently


def test_inverse_sqrt_is_vaswanis_and_equals_transformers():
    d_model, w = 512, 4000
    peak = inverse_sqrt(w, warmup_steps=w, scale=d_model**-0.5)
    assert peak == pytest.approx(d_model**-0.5 * w**-0.5) and peak == pytest.approx(6.988e-4, 1e-3)
    assert inverse_sqrt(0, warmup_steps=w) == 0.0
    lrs = [inverse_sqrt(s, warmup_steps=w) for s in range(1, 3 * w)]
    assert max(lrs) == lrs[w - 1]  # the peak is at s = W
    ref = hf_lrs(get_inverse_sqrt_schedule, 60, peak=1e-3, num_warmup_steps=10, timescale=10)
    ours = [inverse_sqrt(s, warmup_steps=10, scale=1e-3 * 10**0.5) for s in range(60)]
    assert close(ours, ref)


@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("min_lr", [0.0, 1e-4])
def test_wsd_equals_transformers(decay, min_lr):
    ref = hf_lrs(
        get_wsd_schedule,
        120,
        peak=1e-3,
        num_warmup_steps=10,
        num_stable_steps=60,
        num_decay_steps=30,
        decay_type=decay,
        min_lr_ratio=min_lr / 1e-3,
    )
    ours = [
        warmup_stable_decay(
            s,
            peak_lr=1e-3,
            warmup_steps=10,
            stable_steps=60,
            decay_steps=30,
            min_lr=min_lr,
            decay=decay,
        )
        for s in range(120)
    ]
    start = 0 if min_lr == 0 else 10  # HF's warmup starts at min_lr, ours at 0
    assert close(ours[start:], ref[start:])
    assert ours[10:70] == [1e-3] * 60 and ours[-1] == min_lr


def test_constant():
    assert constant(5, lr=0.1) == 0.1


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: SGD([nn.Parameter(torch.zeros(1))], lr=-1), "lr"),
        (lambda: SGD([nn.Parameter(torch.zeros(1))], nesterov=True), "nesterov"),
        (lambda: Adam([nn.Parameter(torch.zeros(1))], betas=(0.9, 1.0)), "betas"),
        (lambda: AdamW([], lr=1e-3), "params"),
        (lambda: Adam8bit([nn.Parameter(torch.zeros(1))], block_size=0), "block_size"),
        (lambda: SAM([nn.Parameter(torch.zeros(1))], rho=0.0), "rho"),
        (lambda: SAM([nn.Parameter(torch.zeros(1))], base_optimizer=int), "base_optimizer"),
        (lambda: warmup_cosine(1, peak_lr=1, min_lr=2, warmup_steps=0, total_steps=5), "min_lr"),
        (lambda: warmup_cosine(1, peak_lr=1, min_lr=0, warmup_steps=6, total_steps=5), "warmup"),
        (lambda: inverse_sqrt(-1, warmup_steps=3), "step"),
        (
            lambda: warmup_stable_decay(
                1, peak_lr=1, warmup_steps=1, stable_steps=1, decay_steps=1, decay="exp"
            ),
            "decay",
        ),
        (lambda: clip_grad_norm([nn.Parameter(torch.zeros(1))], 0.0), "max_norm"),
        (lambda: quantize_blockwise(torch.zeros(3), torch.zeros(5)), "code"),
        (lambda: optimizer_state_bytes(3), "optimizer"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_module_exports():
    assert set(optim.__all__) >= {"SGD", "Adam", "AdamW", "Adam8bit", "SAM"}
    assert np.isclose(optim.DECAY_SHAPES.__len__(), 3)
