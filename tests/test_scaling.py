"""Tests of llmbook.scaling: the published laws' values, the closed-form allocation
against SciPy's numerical optimum, approach 3's objective against a plain
scipy.special implementation, and the fits recovering known laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special

from llmbook import scaling
from llmbook.scaling import BESIROGLU, CHINCHILLA, PF_DAY, ChinchillaLaw, KaplanLaw

# ----------------------------------------------------------------------------- Kaplan
K = KaplanLaw()


def test_kaplan_constants_and_values():
    assert (K.alpha_N, K.N_c, K.alpha_D, K.D_c) == (0.076, 8.8e13, 0.095, 5.4e13)
    assert K.loss_n(K.N_c) == pytest.approx(1.0) and K.loss_d(K.D_c) == pytest.approx(1.0)
    assert K.loss_n(1e9) == pytest.approx((8.8e13 / 1e9) ** 0.076, rel=1e-14)
    assert K.loss_c(K.C_c * PF_DAY) == pytest.approx(1.0)
    # ten times the compute: 5.4x the parameters, 1.9x the tokens (and 10x their product)
    n10, d10 = K.allocation_growth(10)
    assert (n10, d10) == pytest.approx((10**0.73, 10**0.27)) and n10 * d10 == pytest.approx(10)
    ns = np.logspace(6, 12, 7)
    assert np.all(np.diff(K.loss_n(ns)) < 0) and isinstance(K.loss_n(1e9), float)
    # doubling N multiplies the loss by 2^-alpha_N
    assert K.loss_n(2e9) / K.loss_n(1e9) == pytest.approx(2**-0.076, rel=1e-12)


def test_kaplan_joint_law_tends_to_its_one_variable_limits():
    n, d = 1e9, 1e10
    aN, aD, Nc, Dc = K.joint_alpha_N, K.joint_alpha_D, K.joint_N_c, K.joint_D_c
    assert K.loss_nd(n, 1e40) == pytest.approx((Nc / n) ** aN, rel=1e-6)
    assert K.loss_nd(1e40, d) == pytest.approx((Dc / d) ** aD, rel=1e-6)
    assert K.loss_nd(n, d) > max(K.loss_nd(n, 1e40), K.loss_nd(1e40, d))


# ------------------------------------------------------------------------- Chinchilla
@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU])
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_closed_form_allocation_equals_the_numerical_optimum(law, C):
    n, d = law.optimal_allocation(C)
    assert 6 * n * d == pytest.approx(C, rel=1e-12)  # on the budget
    n_num, d_num = scaling.numerical_optimum(law, C)
    assert n == pytest.approx(n_num, rel=1e-6) and d == pytest.approx(d_num, rel=1e-6)
    # and the gradient condition alpha A / N^alpha = beta B / D^beta
    assert law.alpha * law.A / n**law.alpha == pytest.approx(law.beta * law.B / d**law.beta)


def test_allocation_exponents_and_tokens_per_parameter():
    assert CHINCHILLA.a + CHINCHILLA.b == pytest.approx(1.0)
    assert CHINCHILLA.a == pytest.approx(0.28 / 0.62) and BESIROGLU.a == pytest.approx(
        0.5126, abs=1e-4
    )
    c = np.array([1e20, 1e22, 1e24])
    n, _ = CHINCHILLA.optimal_allocation(c)
    assert np.diff(np.log(n)) / np.diff(np.log(c)) == pytest.approx([CHINCHILLA.a] * 2)
    # D*/N* grows like C^(b - a) and is constant when alpha = beta
    r = CHINCHILLA.tokens_per_parameter(c)
    assert r[1] / r[0] == pytest.approx(100 ** (CHINCHILLA.b - CHINCHILLA.a))
    even = ChinchillaLaw(E=1.7, A=400.0, B=400.0, alpha=0.3, beta=0.3)
    assert even.tokens_per_parameter(c) == pytest.approx([1.0] * 3)  # G = 1
    assert (
        15 < BESIROGLU.tokens_per_parameter(5.76e23) < 25 < CHINCHILLA.tokens_per_parameter(5.76e23)
    )


def test_unrounded_hoffmann_constants_give_their_table_3_size():
    # Hoffmann et al.'s approach 3 predicts 40B parameters at Gopher's 5.76e23 FLOPs; the
    # unrounded exponents (0.3392, 0.2849, E = 1.6934) reproduce it, the printed ones do not
    unrounded = ChinchillaLaw(E=1.6934, A=406.4, B=410.7, alpha=0.3392, beta=0.2849)
    assert unrounded.optimal_allocation(5.76e23)[0] == pytest.approx(40e9, rel=0.02)
    assert CHINCHILLA.optimal_allocation(5.76e23)[0] == pytest.approx(32e9, rel=0.02)


def test_isoflop_loss_has_its_minimum_at_the_optimum():
    C = 1e21
    n_star, _ = CHINCHILLA.optimal_allocation(C)
    ns = n_star * np.logspace(-1, 1, 201)
    curve = CHINCHILLA.isoflop_loss(C, ns)
    assert ns[np.argmin(curve)] == pytest.approx(n_star, rel=0.03)  # grid step 2.3%
    assert CHINCHILLA.isoflop_loss(C, n_star) == pytest.approx(
        CHINCHILLA.loss(n_star, C / (6 * n_star))
    )


def test_chinchilla_loss_values():
    assert CHINCHILLA.loss(70e9, 1.4e12) == pytest.approx(
        1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28, rel=1e-14
    )
    assert CHINCHILLA.loss(1e40, 1e40) == pytest.approx(1.69, abs=1e-8)  # E is the floor


# ------------------------------------------------------------------------- approach 3
def _runs(law=CHINCHILLA, n=30, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    return N, D, law.loss(N, D) * np.exp(rng.normal(0, noise, n))


def _plain_objective(theta, N, D, L, delta):
    a, b, e, alpha, beta = theta
    total = 0.0
    for n, d, loss in zip(N, D, L, strict=True):
        lse = special.logsumexp([a - alpha * math.log(n), b - beta * math.log(d), e])
        total += special.huber(delta, lse - math.log(loss))
    return total


def test_huber_objective_equals_a_plain_loop_and_its_gradient_is_right():
    N, D, L = _runs(noise=0.02)
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = rng.uniform([4, 4, 0, 0.2, 0.2], [8, 8, 1, 0.5, 0.5])
        for delta in (1e-3, 1.0):  # Huber's linear and quadratic regimes
            value, grad = scaling.huber_objective(theta, N, D, L, delta)
            assert value == pytest.approx(_plain_objective(theta, N, D, L, delta), rel=1e-12)
            numeric = optimize.approx_fprime(
                theta, lambda t, dl=delta: scaling.huber_objective(t, N, D, L, dl)[0], 1e-7
            )
            assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-6)
    thetas = rng.uniform([4, 4, 0, 0.2, 0.2], [8, 8, 1, 0.5, 0.5], size=(4, 5))
    batch, _ = scaling.huber_objective(thetas, N, D, L)
    assert batch == pytest.approx([scaling.huber_objective(t, N, D, L)[0] for t in thetas])


def test_start_grid_is_the_papers():
    g = scaling.START_GRID
    assert g.shape == (6 * 6 * 5 * 5 * 5, 5)
    assert sorted(set(g[:, 0])) == [0, 5, 10, 15, 20, 25] and sorted(set(g[:, 3])) == [
        0, 0.5, 1, 1.5, 2,
    ]  # fmt: skip


@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU])
def test_fit_recovers_an_exact_law(law):
    fit = scaling.fit_chinchilla(*_runs(law))
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit.law, name) == pytest.approx(getattr(law, name), rel=1e-6), name
    assert fit.objective < 1e-15 and fit.law.a == pytest.approx(law.a, rel=1e-6)


def test_fit_with_noise_stays_close_and_more_starts_do_not_do_better():
    N, D, L = _runs(noise=0.005, n=40)
    fit = scaling.fit_chinchilla(N, D, L)
    assert fit.law.alpha == pytest.approx(0.34, abs=0.05)
    assert fit.law.beta == pytest.approx(0.28, abs=0.05)
    more = scaling.fit_chinchilla(N, D, L, n_best=25)
    assert more.objective >= fit.objective * (1 - 1e-6)


# ---------------------------------------------------------------------- approaches 1-2
def test_isoflop_minimum_finds_a_parabolas_vertex():
    N = np.exp(np.linspace(10, 14, 7))
    L = 2.0 + 0.1 * (np.log(N) - 12.3) ** 2
    n_opt, l_min = scaling.isoflop_minimum(N, L)
    assert n_opt == pytest.approx(math.exp(12.3), rel=1e-9) and l_min == pytest.approx(2.0)


def test_isoflop_minima_of_a_law_give_its_exponent():
    # approach 2 on an exact law: parabolas near each optimum, then a power law in C
    cs = np.logspace(18, 22, 5)
    n_opt = []
    for c in cs:
        ns = CHINCHILLA.optimal_allocation(c)[0] * np.logspace(-0.3, 0.3, 9)
        n_opt.append(scaling.isoflop_minimum(ns, CHINCHILLA.isoflop_loss(c, ns))[0])
    _, a = scaling.fit_power_law(cs, n_opt)
    assert a == pytest.approx(CHINCHILLA.a, abs=0.01)


def test_fit_power_law_is_exact_on_a_power_law():
    x = np.logspace(0, 5, 6)
    assert scaling.fit_power_law(x, 3.0 * x**0.73) == pytest.approx((3.0, 0.73))


def test_bootstrap_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(0).normal(5.0, 1.0, 200)
    draws = scaling.bootstrap(np.mean, x, n_resamples=300, seed=3)
    assert draws.shape == (300, 1)
    assert np.array_equal(draws, scaling.bootstrap(np.mean, x, n_resamples=300, seed=3))
    lo, hi = np.percentile(draws[:, 0], [2.5, 97.5])
    assert lo < x.mean() < hi and hi - lo == pytest.approx(3.92 * x.std() / 200**0.5, rel=0.25)
    pairs = scaling.bootstrap(lambda a, b: [a.sum(), b.sum()], x, -x, n_resamples=5)
    assert np.allclose(pairs[:, 0], -pairs[:, 1])  # rows stay together


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: CHINCHILLA.loss([1e9, -1], 1e9), "N"),
        (lambda: CHINCHILLA.optimal_allocation(float("inf")), "C"),
        (lambda: scaling.numerical_optimum(CHINCHILLA, 1.0), "C"),
        (lambda: scaling.fit_chinchilla(*_runs(n=6), delta=0), "delta"),
        (lambda: scaling.fit_chinchilla(*_runs(n=6), starts=np.zeros((3, 4))), "starts"),
        (lambda: scaling.fit_chinchilla(*_runs(n=6), n_best=0), "n_best"),
        (lambda: scaling.fit_chinchilla([1e6] * 5, [1e9] * 6, [3.0] * 5), "one length"),
        (lambda: scaling.isoflop_minimum([1, 2, 3], [1.0, 0.5, 1.0, 2.0]), "one length"),
        (lambda: scaling.isoflop_minimum([1, 2, 3], [1.0, 2.0, 1.0]), "no minimum"),
        (lambda: scaling.fit_power_law([2, 2], [1, 3]), "distinct"),
        (lambda: scaling.bootstrap(np.mean), "arrays"),
        (lambda: scaling.bootstrap(np.mean, [1.0, 2.0], [1.0]), "one length"),
        (lambda: scaling.bootstrap(np.mean, [1.0, 2.0], n_resamples=0), "n_resamples"),
        (lambda: ChinchillaLaw(E=-1, A=1, B=1, alpha=1, beta=1), "E"),
        (lambda: KaplanLaw(N_c=0), "N_c"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
