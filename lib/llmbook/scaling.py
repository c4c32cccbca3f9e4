r"""Scaling laws: Kaplan et al., Chinchilla, the compute-optimal allocation and fitting
(Chapter 10).

**Kaplan et al. (2020)** fit power laws to the loss (nats per token) of language models
with :math:`N` non-embedding parameters trained on :math:`D` tokens,

.. math::
    L(N) = (N_c / N)^{\alpha_N}, \quad L(D) = (D_c / D)^{\alpha_D}, \quad
    L(N, D) = \Big[(N_c / N)^{\alpha_N / \alpha_D} + D_c / D\Big]^{\alpha_D},

and :math:`L(C_{\min}) = (C_c / C_{\min})^{\alpha_C}` along the compute-efficient frontier,
whose model size grows as :math:`N_{\text{opt}} \propto C^{0.73}` (:class:`KaplanLaw`).

**Hoffmann et al. (2022), "Chinchilla"**, fit :math:`L(N, D) = E + A/N^\alpha + B/D^\beta`
(:class:`ChinchillaLaw`). Under :math:`C = 6ND` its minimum over :math:`N` is, in closed
form,

.. math::
    \begin{aligned}
    N^*(C) &= G \Big(\frac{C}{6}\Big)^{a}, \quad D^*(C) = G^{-1} \Big(\frac{C}{6}\Big)^{b},\\
    G &= \Big(\frac{\alpha A}{\beta B}\Big)^{1/(\alpha+\beta)},
    \quad a = \frac{\beta}{\alpha+\beta}, \; b = \frac{\alpha}{\alpha+\beta}
    \end{aligned}

(:meth:`ChinchillaLaw.optimal_allocation`; :func:`numerical_optimum` finds it with SciPy).

**Fitting.** :func:`fit_chinchilla` is the paper's approach 3: a Huber loss
(:math:`\delta = 10^{-3}`) on the log-space residuals
:math:`\operatorname{LSE}(a - \alpha \ln N, b - \beta \ln D, e) - \ln L` with
:math:`A = e^a, B = e^b, E = e^e`, minimised by L-BFGS from a grid of starts.
:func:`isoflop_minimum` (a parabola in :math:`\ln N` per compute budget) and
:func:`fit_power_law` are approaches 1-2; :func:`bootstrap` resamples runs for intervals.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from llmbook._validate import check_int, check_number, check_type, show

#: One petaflop/s-day, the unit of compute of Kaplan et al., in FLOPs (``1e15 * 86400``).
PF_DAY: float = 1e15 * 86400


def _positive_array(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array of finite positive numbers, or a ValueError naming it."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be positive finite numbers, got {show(value)}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} must be positive finite numbers, got {show(value)}")
    return arr


def _scalar_or_array(x: np.ndarray) -> float | np.ndarray:
    return float(x) if x.ndim == 0 else x


# ----------------------------------------------------------------------- Kaplan et al.
@dataclass(frozen=True)
class KaplanLaw:
    r"""Kaplan et al. (2020)'s power laws, with the paper's constants as defaults (Chapter 10).

    Attributes:
        alpha_N, N_c: :math:`L(N) = (N_c/N)^{\alpha_N}` (eq. 1.1; :math:`N` non-embedding).
        alpha_D, D_c: :math:`L(D) = (D_c/D)^{\alpha_D}` (eq. 1.2; :math:`D` tokens).
        alpha_C, C_c: :math:`L(C_{\min}) = (C_c/C_{\min})^{\alpha_C}` (eq. 1.3; :math:`C_c`
            in PF-days).
        joint_alpha_N, joint_alpha_D, joint_N_c, joint_D_c: the separate fit of
            :math:`L(N, D)` (eq. 1.5, their Table 2).
        n_opt_exponent: the compute-efficient model size grows as
            :math:`N_{\text{opt}} \propto C_{\min}^{0.73}`.
    """

    alpha_N: float = 0.076
    N_c: float = 8.8e13
    alpha_D: float = 0.095
    D_c: float = 5.4e13
    alpha_C: float = 0.050
    C_c: float = 3.1e8
    joint_alpha_N: float = 0.076
    joint_alpha_D: float = 0.103
    joint_N_c: float = 6.4e13
    joint_D_c: float = 1.8e13
    n_opt_exponent: float = 0.73

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            check_number(name, getattr(self, name), low=0.0, strict=True)

    def loss_n(self, N: float | np.ndarray) -> float | np.ndarray:
        r""":math:`L(N) = (N_c/N)^{\alpha_N}`: loss of a model of :math:`N` non-embedding
        parameters trained to convergence on ample data."""
        N = _positive_array("N", N)
        return _scalar_or_array((self.N_c / N) ** self.alpha_N)

    def loss_d(self, D: float | np.ndarray) -> float | np.ndarray:
        r""":math:`L(D) = (D_c/D)^{\alpha_D}`: loss of a large model trained on :math:`D`
        tokens with early stopping."""
        D = _positive_array("D", D)
        return _scalar_or_array((self.D_c / D) ** self.alpha_D)

    def loss_nd(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        r""":math:`L(N, D) = [(N_c/N)^{\alpha_N/\alpha_D} + D_c/D]^{\alpha_D}` (eq. 1.5)."""
        N, D = _positive_array("N", N), _positive_array("D", D)
        aN, aD = self.joint_alpha_N, self.joint_alpha_D
        return _scalar_or_array(((self.joint_N_c / N) ** (aN / aD) + self.joint_D_c / D) ** aD)

    def loss_c(self, C: float | np.ndarray) -> float | np.ndarray:
        r""":math:`L(C_{\min}) = (C_c/C_{\min})^{\alpha_C}` with :math:`C` in FLOPs
        (converted to PF-days, :data:`PF_DAY`)."""
        C = _positive_array("C", C)
        return _scalar_or_array((self.C_c / (C / PF_DAY)) ** self.alpha_C)

    def allocation_growth(self, factor: float) -> tuple[float, float]:
        r"""How much :math:`N_{\text{opt}}` and :math:`D_{\text{opt}}` grow when the compute
        grows by ``factor``: :math:`(f^{0.73}, f^{0.27})`, the second from :math:`C = 6ND`."""
        factor = check_number("factor", factor, low=0.0, strict=True)
        return factor**self.n_opt_exponent, factor ** (1 - self.n_opt_exponent)


# ------------------------------------------------------------------------- Chinchilla
@dataclass(frozen=True)
class ChinchillaLaw:
    r"""The parametric loss :math:`L(N, D) = E + A/N^\alpha + B/D^\beta` (Chapter 10).

    :data:`CHINCHILLA` holds Hoffmann et al. (2022)'s constants, :data:`BESIROGLU` the
    replication's (Besiroglu et al. 2024).
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        check_number("E", self.E, low=0.0)
        for name in ("A", "B", "alpha", "beta"):
            check_number(name, getattr(self, name), low=0.0, strict=True)

    def loss(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        r""":math:`E + A/N^\alpha + B/D^\beta` (broadcast over ``N`` and ``D``)."""
        N, D = _positive_array("N", N), _positive_array("D", D)
        return _scalar_or_array(self.E + self.A / N**self.alpha + self.B / D**self.beta)

    @property
    def a(self) -> float:
        r""":math:`a = \beta/(\alpha+\beta)`, the exponent of :math:`N^* \propto C^a`."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        r""":math:`b = \alpha/(\alpha+\beta)`, the exponent of :math:`D^* \propto C^b`."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        r""":math:`G = (\alpha A / (\beta B))^{1/(\alpha+\beta)}`."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal_allocation(self, C: float | np.ndarray) -> tuple[float | np.ndarray, ...]:
        r"""The compute-optimal :math:`(N^*, D^*)` under :math:`C = 6ND`, in closed form:
        :math:`N^* = G (C/6)^a`, :math:`D^* = G^{-1} (C/6)^b` (module docstring)."""
        C = _positive_array("C", C)
        n = self.G * (C / 6) ** self.a
        return _scalar_or_array(n), _scalar_or_array(C / (6 * n))

    def tokens_per_parameter(self, C: float | np.ndarray) -> float | np.ndarray:
        r""":math:`D^*/N^* = G^{-2} (C/6)^{b-a}`: constant only when :math:`\alpha = \beta`."""
        n, d = self.optimal_allocation(C)
        return d / n

    def isoflop_loss(self, C: float, N: float | np.ndarray) -> float | np.ndarray:
        r"""The loss along the isoFLOP curve of budget :math:`C`:
        :math:`L(N, C/(6N))`."""
        C = check_number("C", C, low=0.0, strict=True)
        N = _positive_array("N", N)
        return self.loss(N, C / (6 * N))


#: Hoffmann et al. (2022)'s approach-3 fit, as printed in the paper (eq. 10).
CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
#: Besiroglu et al. (2024)'s refit of the same form to the paper's own data points.
BESIROGLU = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def numerical_optimum(law: ChinchillaLaw, C: float) -> tuple[float, float]:
    r"""Minimise ``law``'s loss over :math:`N` with :math:`D = C/(6N)` numerically
    (``scipy.optimize.minimize_scalar`` on :math:`\ln N`), the check of
    :meth:`ChinchillaLaw.optimal_allocation`. Returns :math:`(N^*, D^*)`."""
    check_type("law", law, ChinchillaLaw, "a ChinchillaLaw")
    C = check_number("C", C, low=6.0, strict=True)
    half = np.log(C / 6)  # N and D both >= 1

    def f(x: float) -> float:
        return float(law.loss(np.exp(x), C / (6 * np.exp(x))))

    res = optimize.minimize_scalar(f, bounds=(0.0, half), method="bounded",
                                   options={"xatol": 1e-10})  # fmt: skip
    n = float(np.exp(res.x))
    return n, C / (6 * n)


# ---------------------------------------------------------------------------- fitting
def _check_runs(N: object, D: object, L: object) -> tuple[np.ndarray, ...]:
    N, D, L = _positive_array("N", N), _positive_array("D", D), _positive_array("L", L)
    if not (N.ndim == D.ndim == L.ndim == 1 and len(N) == len(D) == len(L)):
        raise ValueError(
            f"N, D and L must be 1-D of one length, got shapes {N.shape}, {D.shape}, {L.shape}"
        )
    if len(N) < 5:
        raise ValueError(f"N, D and L need at least 5 runs for 5 parameters, got {len(N)}")
    return N, D, L


def huber_objective(
    theta: np.ndarray, N: np.ndarray, D: np.ndarray, L: np.ndarray, delta: float = 1e-3
) -> tuple[float, np.ndarray]:
    r"""Approach 3's objective and its gradient at :math:`\theta = (a, b, e, \alpha, \beta)`.

    .. math::
        \sum_i \operatorname{Huber}_\delta\!\Big(\operatorname{LSE}(a - \alpha \ln N_i,\;
        b - \beta \ln D_i,\; e) - \ln L_i\Big)

    with :math:`\operatorname{Huber}_\delta(r) = r^2/2` for :math:`|r| \le \delta`, else
    :math:`\delta(|r| - \delta/2)` (``scipy.special.huber``). ``theta`` may also be a
    ``(k, 5)`` array of points: then the ``k`` objectives (no gradient) are returned.
    """
    delta = check_number("delta", delta, low=0.0, strict=True)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape[-1:] != (5,) or theta.ndim > 2 or not np.all(np.isfinite(theta)):
        raise ValueError(
            f"theta must be 5 finite numbers (a, b, e, alpha, beta), got {show(theta)}"
        )
    t = np.atleast_2d(theta)[:, :, None]  # (k, 5, 1)
    terms = np.stack([t[:, 0] - t[:, 3] * np.log(N), t[:, 1] - t[:, 4] * np.log(D),
                      np.broadcast_to(t[:, 2], (len(t), len(N)))], axis=1)  # fmt: skip
    lse = special.logsumexp(terms, axis=1)  # (k, n)
    r = lse - np.log(L)
    values = special.huber(delta, r).sum(axis=1)
    if theta.ndim == 2:
        return values, np.empty((len(theta), 0))
    w = np.exp(terms[0] - lse[0])  # softmax weights (3, n)
    dr = np.clip(r[0], -delta, delta)  # Huber's derivative
    grad = np.array([
        (dr * w[0]).sum(), (dr * w[1]).sum(), (dr * w[2]).sum(),
        -(dr * w[0] * np.log(N)).sum(), -(dr * w[1] * np.log(D)).sum(),
    ])  # fmt: skip
    return float(values[0]), grad


#: The grid of initialisations of approach 3 in Hoffmann et al., 4,500 starts with
#: :math:`\alpha, \beta \in \{0, 0.5, \dots, 2\}`, :math:`e \in \{-1, -0.5, \dots, 1\}` and
#: :math:`a, b \in \{0, 5, \dots, 25\}`.
START_GRID: np.ndarray = np.array(
    [
        (a, b, e, al, be)
        for a, b, e, al, be in itertools.product(
            np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
            np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5),
        )
    ],
    dtype=np.float64,
)  # fmt: skip


@dataclass(frozen=True)
class ChinchillaFit:
    """The result of :func:`fit_chinchilla` (Chapter 10).

    Attributes:
        law: the fitted :class:`ChinchillaLaw`.
        objective: the Huber objective at the fit.
        theta: :math:`(a, b, e, \\alpha, \\beta)`, with :math:`A = e^a`, etc.
    """

    law: ChinchillaLaw
    objective: float
    theta: tuple[float, ...]

    def __post_init__(self) -> None:
        check_type("law", self.law, ChinchillaLaw, "a ChinchillaLaw")
        check_number("objective", self.objective, low=0.0)
        if len(self.theta) != 5:
            raise ValueError(f"theta must hold 5 numbers, got {show(self.theta)}")


def fit_chinchilla(
    N: Sequence[float] | np.ndarray,
    D: Sequence[float] | np.ndarray,
    L: Sequence[float] | np.ndarray,
    *,
    delta: float = 1e-3,
    starts: np.ndarray | None = None,
    n_best: int = 10,
) -> ChinchillaFit:
    r"""Fit :math:`L = E + A/N^\alpha + B/D^\beta` by Hoffmann et al.'s approach 3.

    Minimises :func:`huber_objective` with L-BFGS (``scipy.optimize.minimize``,
    analytic gradient) from the ``n_best`` points of ``starts`` (default
    :data:`START_GRID`) with the lowest objective, and keeps the best result;
    ``n_best=len(starts)`` starts from every grid point, as the paper does, at many times
    the cost (on synthetic data, 25 starts find no lower objective than 10: the tests).
    """
    N, D, L = _check_runs(N, D, L)
    delta = check_number("delta", delta, low=0.0, strict=True)
    grid = START_GRID if starts is None else np.asarray(starts, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != 5 or len(grid) == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"starts must be a (k, 5) array of finite numbers, got {show(grid)}")
    n_best = check_int("n_best", n_best, 1)
    values, _ = huber_objective(grid, N, D, L, delta)
    best = None
    for x0 in grid[np.argsort(values, kind="stable")[:n_best]]:
        res = optimize.minimize(
            huber_objective, x0, args=(N, D, L, delta), jac=True, method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
        )  # fmt: skip
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = (float(v) for v in best.x)
    if alpha <= 0 or beta <= 0:
        raise ValueError(
            f"the fit's exponents are not positive (alpha={alpha:.3g}, beta={beta:.3g}): "
            "N, D and L do not follow the law"
        )
    law = ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                        alpha=alpha, beta=beta)  # fmt: skip
    return ChinchillaFit(law, float(best.fun), (a, b, e, alpha, beta))


def isoflop_minimum(
    N: Sequence[float] | np.ndarray, L: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    r"""Approach 2: fit :math:`L \approx c_0 + c_1 x + c_2 x^2` in :math:`x = \ln N` to the runs
    of one compute budget and return the vertex :math:`(N_{\text{opt}}, L_{\min})`,
    :math:`x^* = -c_1/(2 c_2)`. Needs at least 3 distinct sizes and an upward parabola."""
    N, L = _positive_array("N", N), _positive_array("L", L)
    if N.shape != L.shape or N.ndim != 1:
        raise ValueError(f"N and L must be 1-D of one length, got {N.shape} and {L.shape}")
    if len(np.unique(N)) < 3:
        raise ValueError(f"N must hold at least 3 distinct sizes for a parabola, got {show(N)}")
    c2, c1, c0 = np.polyfit(np.log(N), L, 2)
    if c2 <= 0:
        raise ValueError("L has no minimum in N: the fitted parabola opens downwards")
    x = -c1 / (2 * c2)
    return float(np.exp(x)), float(c0 + c1 * x + c2 * x**2)


def fit_power_law(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    r"""Least squares in log-log: :math:`y = k\,x^{p}`, i.e. :math:`\ln y = \ln k + p \ln x`.
    Returns :math:`(k, p)` (approaches 1-2: :math:`N_{\text{opt}} \propto C^a`)."""
    x, y = _positive_array("x", x), _positive_array("y", y)
    if x.shape != y.shape or x.ndim != 1 or len(np.unique(x)) < 2:
        raise ValueError(f"x and y must be 1-D of one length with 2+ distinct x, got {show(x)}")
    p, lnk = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(lnk)), float(p)


def bootstrap(
    statistic: Callable[..., Sequence[float] | np.ndarray],
    *arrays: Sequence[float] | np.ndarray,
    n_resamples: int = 200,
    seed: int = 0,
) -> np.ndarray:
    r"""Case resampling: draw the runs (rows of ``arrays``) with replacement
    ``n_resamples`` times and return the ``(n_resamples, k)`` values of ``statistic``
    (which returns ``k`` numbers). Percentiles of the columns are bootstrap intervals
    (:func:`numpy.percentile`)."""
    if not callable(statistic):
        raise ValueError(f"statistic must be callable, got {show(statistic)}")
    if not arrays:
        raise ValueError("arrays must hold at least one array of runs")
    cols = [np.asarray(a) for a in arrays]
    n = len(cols[0])
    if n < 2 or any(c.ndim != 1 or len(c) != n for c in cols):
        raise ValueError(f"arrays must be 1-D of one length >= 2, got {[c.shape for c in cols]}")
    n_resamples, seed = check_int("n_resamples", n_resamples, 1), check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    out = [np.atleast_1d(np.asarray(statistic(*(c[idx] for c in cols)), dtype=np.float64))
           for idx in rng.integers(0, n, size=(n_resamples, n))]  # fmt: skip
    return np.stack(out)


__all__ = [
    "BESIROGLU",
    "CHINCHILLA",
    "PF_DAY",
    "START_GRID",
    "ChinchillaFit",
    "ChinchillaLaw",
    "KaplanLaw",
    "bootstrap",
    "fit_chinchilla",
    "fit_power_law",
    "huber_objective",
    "isoflop_minimum",
    "numerical_optimum",
]
