"""Tests of llmbook.landscape: Hessian-vector products, eigenvalues, spectra, slices.

The reference is the dense Hessian of a small tanh MLP (N = 57 parameters) from
``torch.func.hessian`` in float64: :func:`hvp` equals ``H @ v`` to 1e-12 (relative),
the central finite difference with eps = 1e-5 to 1e-7, and Lanczos and power iteration
equal ``torch.linalg.eigvalsh(H)`` to 1e-8 (relative). Stochastic Lanczos quadrature
with N steps reproduces the moments tr(H^k)/N exactly (1e-10) when averaged over the
full basis; slices equal direct evaluation; gradient descent on a quadratic with
eta * lambda_max < 2 converges and its sharpness is lambda_max (1e-8); ridge and
minimum-norm fits equal numpy's lstsq / the normal equations (1e-10); the bounds
equal their formulas.
"""

import math

import numpy as np
import pytest
import torch

from llmbook.landscape import (
    filter_normalized_direction,
    finite_difference_hvp,
    gaussian_density,
    gd_with_sharpness,
    hvp,
    loss_slice,
    occam_bound,
    pac_bayes_bound,
    random_relu_features,
    ridge_fit,
    spectral_density,
    top_eigenvalues,
)


def _mlp(seed: int = 0):
    """A 5 -> 6 -> 1 tanh MLP with a squared loss on 40 points: params, loss, dense H."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randn(40, generator=g, dtype=torch.float64)
    shapes = [(5, 6), (6,), (6,), ()]
    params = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]

    def f(W1, b1, w2, b2):
        return ((torch.tanh(X @ W1 + b1) @ w2 + b2 - y) ** 2).mean()

    def f_flat(flat):
        parts, start = [], 0
        for s in shapes:
            size = int(torch.tensor(s).prod()) if s else 1
            parts.append(flat[start : start + size].reshape(s))
            start += size
        return f(*parts)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    H = torch.func.hessian(f_flat)(flat)
    return params, (lambda: f(*params)), H


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def test_hvp_equals_dense_hessian_and_finite_differences():
    params, loss, H = _mlp()
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    ref = H @ _flat(v)
    got = _flat(hvp(loss, params, v))
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12 * ref.abs().max())
    fd = _flat(finite_difference_hvp(loss, params, v, eps=1e-5))
    assert (fd - ref).abs().max() <= 1e-7 * ref.abs().max()
    # params are restored after the finite difference
    assert torch.equal(_flat([p.detach() for p in params]), _flat([p.detach() for p in _mlp()[0]]))


def test_hvp_is_linear_and_symmetric():
    params, loss, _ = _mlp()
    g = torch.Generator().manual_seed(2)
    u = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    Hu, Hv = _flat(hvp(loss, params, u)), _flat(hvp(loss, params, v))
    both = _flat(hvp(loss, params, [2 * a - 3 * b for a, b in zip(u, v, strict=True)]))
    assert torch.allclose(both, 2 * Hu - 3 * Hv, rtol=1e-12, atol=1e-12)
    assert torch.dot(_flat(u), Hv).item() == pytest.approx(torch.dot(_flat(v), Hu).item(), 1e-12)


def test_hvp_of_a_quadratic_is_the_matrix():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    v = torch.tensor([1.0, -1.0], dtype=torch.float64)
    (out,) = hvp(lambda: 0.5 * x @ A @ x, [x], [v])
    assert torch.allclose(out, A @ v, rtol=0, atol=1e-15)
    # a loss linear in the parameters has H = 0
    (zero,) = hvp(lambda: (x * 3).sum(), [x], [v])
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("k", [1, 3])
def test_top_eigenvalues_equal_eigvalsh(method, k):
    params, loss, H = _mlp()
    ref = torch.linalg.eigvalsh(H).flip(0)[:k]
    kw = {"iters": 3000, "tol": 1e-13} if method == "power" else {}
    got = top_eigenvalues(loss, params, k=k, method=method, **kw)
    assert got.shape == (k,) and got.dtype == torch.float64
    assert torch.all(got[:-1] >= got[1:])
    assert torch.allclose(got, ref, rtol=1e-8, atol=1e-8 * ref.abs().max())


def test_one_lanczos_step_is_the_rayleigh_quotient():
    params, loss, H = _mlp()
    got = top_eigenvalues(loss, params, iters=1)
    assert got.shape == (1,)
    assert float(got[0]) <= float(torch.linalg.eigvalsh(H)[-1]) + 1e-12


def test_lanczos_with_n_steps_gives_the_whole_spectrum():
    params, loss, H = _mlp()
    n = H.shape[0]
    got = top_eigenvalues(loss, params, k=n, iters=n)
    ref = torch.linalg.eigvalsh(H).flip(0)
    assert torch.allclose(got, ref, rtol=0, atol=1e-9 * ref.abs().max())


def test_power_finds_the_algebraic_top_of_a_negative_dominated_spectrum():
    A = torch.diag(torch.tensor([-5.0, 1.0, 2.0], dtype=torch.float64))
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    got = top_eigenvalues(lambda: 0.5 * x @ A @ x, [x], k=2, method="power", tol=1e-12)
    assert torch.allclose(got, torch.tensor([2.0, 1.0], dtype=torch.float64), atol=1e-6)
    got = top_eigenvalues(lambda: 0.5 * x @ A @ x, [x], k=3)
    assert torch.allclose(got, torch.tensor([2.0, 1.0, -5.0], dtype=torch.float64), atol=1e-12)


def test_bad_input():
    params, loss, _ = _mlp()
    with pytest.raises(ValueError, match="params"):
        hvp(loss, [torch.zeros(2)], [torch.zeros(2)])
    with pytest.raises(ValueError, match="v"):
        hvp(loss, params, [torch.zeros(2)])
    with pytest.raises(ValueError, match="loss_fn"):
        hvp(lambda: torch.tensor(1.0), params, [torch.zeros_like(p) for p in params])
    with pytest.raises(ValueError, match="k"):
        top_eigenvalues(loss, params, k=0)
    with pytest.raises(ValueError, match="method"):
        top_eigenvalues(loss, params, method="qr")
    with pytest.raises(ValueError, match="eps"):
        finite_difference_hvp(loss, params, [torch.zeros_like(p) for p in params], eps=0)


def test_spectral_density_weights_and_moments():
    params, loss, H = _mlp()
    nodes, weights = spectral_density(loss, params, iters=12, n_probes=3, seed=4)
    assert nodes.shape == weights.shape == (36,)
    assert bool((weights >= 0).all()) and abs(float(weights.sum()) - 1) < 1e-12
    # the nodes of one probe lie inside the spectrum
    lam = torch.linalg.eigvalsh(H)
    assert float(nodes.max()) <= float(lam[-1]) + 1e-9
    assert float(nodes.min()) >= float(lam[0]) - 1e-9
    # the quadrature reproduces q^T H^k q for k < 2m exactly, for the probe's q
    one_n, one_w = spectral_density(loss, params, iters=5, seed=7)
    g = torch.Generator().manual_seed(7)
    q = torch.randn(H.shape[0], generator=g, dtype=torch.float64)
    q = q / q.norm()
    for k in range(1, 10):
        exact = float(q @ torch.linalg.matrix_power(H, k) @ q)
        assert float((one_w * one_n**k).sum()) == pytest.approx(exact, rel=1e-8, abs=1e-12)


def test_gaussian_density_integrates_to_one():
    nodes = torch.tensor([0.0, 3.0], dtype=torch.float64)
    weights = torch.tensor([0.25, 0.75], dtype=torch.float64)
    grid = torch.linspace(-10, 15, 5001, dtype=torch.float64)
    dens = gaussian_density(nodes, weights, grid, sigma=0.5)
    assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-9)
    peak = 0.75 / (0.5 * math.sqrt(2 * math.pi))
    assert float(dens.max()) == pytest.approx(peak, rel=1e-3)


def test_filter_normalized_direction_matches_filter_norms():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    params = list(net.parameters())
    d = filter_normalized_direction(params, seed=3)
    for p, t in zip(params, d, strict=True):
        assert t.shape == p.shape
        if p.ndim == 1:
            assert torch.equal(t, torch.zeros_like(p))
        else:
            assert torch.allclose(t.norm(dim=1), p.detach().norm(dim=1), rtol=1e-5)
    again = filter_normalized_direction(params, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(d, again, strict=True))
    # scaling the weights scales the direction (the point of filter normalisation)
    scaled = filter_normalized_direction([p.detach() * 10 for p in params], seed=3)
    assert all(torch.allclose(a * 10, b) for a, b in zip(d, scaled, strict=True))


def test_loss_slice_equals_direct_evaluation_and_restores_params():
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)

    def loss():
        return (x[0] ** 2 + 3 * x[1] ** 2 + x[0] * x[1]).reshape(())

    d1 = [torch.tensor([1.0, 0.0], dtype=torch.float64)]
    d2 = [torch.tensor([0.5, 1.0], dtype=torch.float64)]
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64)
    plane = loss_slice(loss, [x], [d1, d2], [a, b])
    assert plane.shape == (3, 2)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            z = torch.tensor([1.0, -2.0], dtype=torch.float64) + ai * d1[0] + bj * d2[0]
            ref = z[0] ** 2 + 3 * z[1] ** 2 + z[0] * z[1]
            assert float(plane[i, j]) == pytest.approx(float(ref), abs=1e-12)
    assert torch.equal(x.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))
    origin = [torch.zeros(2, dtype=torch.float64)]
    line = loss_slice(loss, [x], [d1], [a], origin=origin)
    assert torch.allclose(line, a**2, atol=1e-12)


def test_gd_with_sharpness_on_a_quadratic():
    A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    trace = gd_with_sharpness(lambda: 0.5 * x @ A @ x, [x], lr=0.2, steps=60, every=20)
    assert trace.steps == [0, 20, 40] and len(trace.losses) == 60
    assert trace.sharpness[-1] == pytest.approx(9.0, rel=1e-8)
    assert trace.losses[-1] < 1e-6 * trace.losses[0]  # 0.2 * 9 < 2: converges
    y = torch.ones(3, dtype=torch.float64, requires_grad=True)
    bad = gd_with_sharpness(lambda: 0.5 * y @ A @ y, [y], lr=0.25, steps=30)
    assert bad.losses[-1] > bad.losses[0]  # 0.25 * 9 > 2: diverges


def test_random_features_and_ridge_fit():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    F = random_relu_features(X, 50, seed=1)
    assert F.shape == (20, 50) and bool((F >= 0).all())
    assert torch.equal(F, random_relu_features(X, 50, seed=1))
    assert torch.allclose(F[:5], random_relu_features(X[:5], 50, seed=1), atol=1e-15)
    # minimum norm: interpolates and equals numpy's lstsq (which is min-norm)
    w = ridge_fit(F, y)
    assert torch.allclose(F @ w, y, atol=1e-8)
    ref = np.linalg.lstsq(F.numpy(), y.numpy(), rcond=None)[0]
    assert np.allclose(w.numpy(), ref, atol=1e-8)
    # ridge: the normal equations, in both the p > n and p <= n forms
    for feats in (F, F[:, :10]):
        wr = ridge_fit(feats, y, 0.3)
        p = feats.shape[1]
        direct = torch.linalg.solve(
            feats.T @ feats + 0.3 * torch.eye(p, dtype=torch.float64), feats.T @ y
        )
        assert torch.allclose(wr, direct, atol=1e-10)


def test_bounds_equal_their_formulas():
    assert occam_bound(0.1, 1000, 50.0, 0.05) == pytest.approx(
        0.1 + math.sqrt((50 + math.log(20)) / 2000)
    )
    assert pac_bayes_bound(0.2, 400, 3.0, 0.1) == pytest.approx(
        0.2 + math.sqrt((3 + math.log(2 * 20 / 0.1)) / 800)
    )
    assert occam_bound(0.0, 10, 0.0) < occam_bound(0.0, 10, 1.0)


def test_bad_input_of_the_rest():
    params, loss, _ = _mlp()
    with pytest.raises(ValueError, match="iters"):
        spectral_density(loss, params, iters=0)
    with pytest.raises(ValueError, match="weights"):
        gaussian_density(torch.zeros(2), torch.tensor([-1.0, 2.0]), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="directions"):
        loss_slice(loss, params, [], [])
    with pytest.raises(ValueError, match="coords"):
        loss_slice(loss, params, [[torch.zeros_like(p) for p in params]], [torch.zeros(3)] * 2)
    with pytest.raises(ValueError, match="lr"):
        gd_with_sharpness(loss, params, lr=0.0, steps=1)
    with pytest.raises(ValueError, match="y must have"):
        ridge_fit(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="delta"):
        occam_bound(0.1, 10, 1.0, delta=1.0)
    with pytest.raises(ValueError, match="train_error"):
        pac_bayes_bound(1.5, 10, 1.0)
