r"""The loss landscape: Hessian-vector products, top eigenvalues, spectra and slices (Chapter 11).

The Hessian :math:`H = \nabla^2 L(\theta)` of a model with :math:`N` parameters has
:math:`N^2` entries, far too many to form; but the product :math:`Hv` with any vector
:math:`v` costs about two gradients, by differentiating :math:`g(\theta)^\top v` once more
(*double backpropagation*, Pearlmutter 1994):

.. math::
    Hv = \nabla_\theta \big(\nabla_\theta L(\theta)^\top v\big).

:func:`hvp` computes it; :func:`top_eigenvalues` finds the largest eigenvalues from such
products alone, by power iteration or by Lanczos with full reorthogonalisation;
:func:`spectral_density` estimates the whole eigenvalue density by stochastic Lanczos
quadrature (Ghorbani et al. 2019). :func:`finite_difference_hvp` is the cheap,
inexact alternative :math:`(g(\theta + \epsilon v) - g(\theta - \epsilon v)) / 2\epsilon`.

A *loss function* here is a zero-argument callable returning a scalar tensor computed from
``params``, a list of tensors with ``requires_grad=True`` (e.g. ``list(model.parameters())``
with the batch fixed inside the closure); vectors are lists of tensors shaped like
``params``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from llmbook._validate import check_choice, check_float_tensor, check_int, check_number, show

LossFn = Callable[[], Tensor]

#: The eigenvalue methods of :func:`top_eigenvalues`.
EIGEN_METHODS: tuple[str, ...] = ("lanczos", "power")


# ------------------------------------------------------------------------------ checks
def _check_params(params: object) -> list[Tensor]:
    if isinstance(params, Tensor) or not isinstance(params, Sequence) or len(params) == 0:
        raise ValueError(
            f"params must be a non-empty list of tensors with requires_grad=True, "
            f"got {show(params)}"
        )
    out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Tensor) or not p.is_floating_point() or not p.requires_grad:
            raise ValueError(
                f"params[{i}] must be a floating-point tensor with requires_grad=True, "
                f"got {show(p)}"
            )
    return out


def _check_vectors(name: str, v: object, params: list[Tensor]) -> list[Tensor]:
    if isinstance(v, Tensor) or not isinstance(v, Sequence) or len(v) != len(params):
        raise ValueError(
            f"{name} must be a list of {len(params)} tensors shaped like params, got {show(v)}"
        )
    out = list(v)
    for i, (t, p) in enumerate(zip(out, params, strict=True)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.shape != p.shape:
            raise ValueError(
                f"{name}[{i}] must be a floating-point tensor of shape {tuple(p.shape)}, "
                f"got {show(t)}"
            )
    return [t.detach().to(dtype=p.dtype, device=p.device) for t, p in zip(out, params, strict=True)]


def _check_loss_fn(loss_fn: object) -> LossFn:
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a zero-argument callable, got {show(loss_fn)}")
    return loss_fn  # type: ignore[return-value]


def _scalar_loss(loss_fn: LossFn) -> Tensor:
    loss = loss_fn()
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError(
            "loss_fn must return a scalar tensor that depends on params (requires grad), "
            f"got {show(loss)}"
        )
    return loss.reshape(())


def _zeros_for_none(grads: Sequence[Tensor | None], params: list[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


# ------------------------------------------------------------------ Hessian products
def hvp(loss_fn: LossFn, params: Sequence[Tensor], v: Sequence[Tensor]) -> list[Tensor]:
    r"""The Hessian-vector product :math:`Hv` by double backpropagation (Chapter 11).

    Parameters
    ----------
    loss_fn : callable
        Zero-argument callable returning the scalar loss :math:`L(\theta)` of ``params``.
    params : list of torch.Tensor
        The parameters :math:`\theta` (``requires_grad=True``).
    v : list of torch.Tensor
        The vector, one tensor per parameter, with the parameters' shapes.

    Returns
    -------
    list of torch.Tensor
        :math:`Hv = \nabla_\theta(\nabla_\theta L^\top v)`, shaped like ``params``
        (detached); exact up to rounding, for the cost of about two gradients.
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_params(params)
    v = _check_vectors("v", v, params)
    return _HessianOperator(loss_fn, params)(v)


def finite_difference_hvp(
    loss_fn: LossFn, params: Sequence[Tensor], v: Sequence[Tensor], eps: float = 1e-3
) -> list[Tensor]:
    r"""The central difference of gradients, an approximation to :func:`hvp`:
    :math:`Hv \approx (g(\theta+\epsilon v) - g(\theta-\epsilon v))/2\epsilon`.

    Approximates :func:`hvp` with two gradients and no second derivatives; the error is
    :math:`O(\epsilon^2)` truncation plus :math:`O(u/\epsilon)` rounding (:math:`u` the
    unit roundoff of the dtype). ``params`` are perturbed in place and restored.

    Parameters
    ----------
    loss_fn, params, v
        As in :func:`hvp`.
    eps : float
        The step :math:`\epsilon > 0`.

    Returns
    -------
    list of torch.Tensor
        The approximation to :math:`Hv`, shaped like ``params``.
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_params(params)
    v = _check_vectors("v", v, params)
    eps = check_number("eps", eps, low=0.0, strict=True)

    def grad_at(sign: float) -> list[Tensor]:
        with torch.no_grad():
            for p, t in zip(params, v, strict=True):
                p.add_(t, alpha=sign * eps)
        try:
            g = torch.autograd.grad(_scalar_loss(loss_fn), params, allow_unused=True)
        finally:
            with torch.no_grad():
                for p, t in zip(params, v, strict=True):
                    p.sub_(t, alpha=sign * eps)
        return _zeros_for_none(g, params)

    plus, minus = grad_at(1.0), grad_at(-1.0)
    return [(a - b) / (2 * eps) for a, b in zip(plus, minus, strict=True)]


class _HessianOperator:
    """``v -> Hv`` with the gradient graph built once and reused for every product."""

    def __init__(self, loss_fn: LossFn, params: list[Tensor]) -> None:
        self.params = params
        loss = _scalar_loss(loss_fn)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        self.grads = _zeros_for_none(grads, params)
        self.n = sum(p.numel() for p in params)
        self.dtype = params[0].dtype

    def __call__(self, v: list[Tensor]) -> list[Tensor]:
        dot = sum((g * t).sum() for g, t in zip(self.grads, v, strict=True))
        if not dot.requires_grad:  # the loss is linear in params: H = 0
            return [torch.zeros_like(p) for p in self.params]
        hv = torch.autograd.grad(dot, self.params, retain_graph=True, allow_unused=True)
        return [h.detach() for h in _zeros_for_none(hv, self.params)]

    def flat(self, x: Tensor) -> Tensor:
        """``H x`` for a flat float64 vector ``x`` (returned as flat float64)."""
        parts, start = [], 0
        for p in self.params:
            parts.append(x[start : start + p.numel()].view_as(p).to(p.dtype))
            start += p.numel()
        return torch.cat([h.reshape(-1) for h in self(parts)]).to(torch.float64)


def _start_vector(n: int, seed: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64).to(device)
    return x / x.norm()


# ------------------------------------------------------------------------ Lanczos
def _lanczos(
    op: _HessianOperator, m: int, seed: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``m`` Lanczos steps with full reorthogonalisation from a random unit vector.

    Returns the tridiagonal's diagonal ``alpha`` (m',), off-diagonal ``beta`` (m'-1,) and the
    basis ``Q`` (m', n); ``m' <= m`` when an invariant subspace is found early.
    """
    q = _start_vector(op.n, seed, device)
    basis, alphas, betas = [q], [], []
    for j in range(m):
        w = op.flat(basis[j])
        alphas.append(torch.dot(w, basis[j]))
        Q = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice is enough (Parlett)
            w = w - Q.T @ (Q @ w)
        beta = w.norm()
        if j == m - 1 or beta <= 1e-10 * max(1.0, float(alphas[-1].abs())):
            break
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    beta_out = torch.stack(betas[: k - 1]) if k > 1 else torch.zeros(0, dtype=torch.float64)
    return torch.stack(alphas), beta_out.to(alphas[0].device), torch.stack(basis[:k])


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


# ------------------------------------------------------------------- power iteration
def _power(
    op: _HessianOperator,
    found: list[Tensor],
    shift: float,
    iters: int,
    tol: float,
    seed: int,
    device: torch.device,
) -> tuple[float, Tensor]:
    """Power iteration on ``(H - shift I)`` restricted to the complement of ``found``."""

    def project(x: Tensor) -> Tensor:
        for u in found:
            x = x - torch.dot(u, x) * u
        return x

    x = project(_start_vector(op.n, seed, device))
    x = x / x.norm()
    lam = math.nan
    for _ in range(iters):
        y = project(op.flat(x) - shift * x)
        new = float(torch.dot(x, y))  # Rayleigh quotient of the shifted operator
        norm = y.norm()
        if norm == 0:
            return shift, x
        x = y / norm
        if abs(new - lam) <= tol * max(1.0, abs(new)):
            lam = new
            break
        lam = new
    return lam + shift, x


def top_eigenvalues(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    k: int = 1,
    method: str = "lanczos",
    iters: int | None = None,
    seed: int = 0,
    tol: float = 1e-6,
) -> Tensor:
    r"""The ``k`` largest (algebraic) eigenvalues of the Hessian, from products alone (Ch. 11).

    ``"lanczos"`` runs ``iters`` Lanczos steps with full reorthogonalisation and returns
    the top Ritz values of the tridiagonal matrix; ``"power"`` runs power iteration (at most
    ``iters`` steps each, stopping when the Rayleigh quotient changes by less than ``tol``,
    relatively), finds one eigenvalue at a time and deflates it by keeping the iterate
    orthogonal to the eigenvectors found. Power iteration converges to the eigenvalue of
    largest *magnitude*; when that is negative it is run again on :math:`H - \lambda I`,
    whose largest eigenvalue is :math:`\lambda_{\max} - \lambda`.

    Parameters
    ----------
    loss_fn, params
        As in :func:`hvp`.
    k : int
        How many eigenvalues, ``1 <= k <= N`` (``N`` the number of parameters).
    method : str
        The algorithm, ``"lanczos"`` or ``"power"``.
    iters : int, optional
        Lanczos steps (default ``min(N, max(2k + 20, 30))``; at least ``k``) or the power
        iterations per eigenvalue (default 200).
    seed : int
        Seeds the random start vector.
    tol : float
        The power iteration's relative stopping tolerance (unused by Lanczos).

    Returns
    -------
    torch.Tensor
        1-D float64 tensor of the ``k`` eigenvalues, in descending order.
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_params(params)
    n = sum(p.numel() for p in params)
    k = check_int("k", k, 1, n)
    method = check_choice("method", method, EIGEN_METHODS)
    if iters is None:
        iters = min(n, max(2 * k + 20, 30)) if method == "lanczos" else 200
    iters = check_int("iters", iters, k if method == "lanczos" else 1)
    seed = check_int("seed", seed, 0)
    tol = check_number("tol", tol, low=0.0, strict=True)
    op = _HessianOperator(loss_fn, params)
    device = params[0].device
    if method == "lanczos":
        alpha, beta, _ = _lanczos(op, min(iters, n), seed, device)
        ritz = torch.linalg.eigvalsh(_tridiagonal(alpha, beta))
        top = ritz.flip(0)[:k]
        if top.numel() < k:  # an invariant subspace of dimension < k: restart is overkill
            raise ValueError(
                f"k={k} exceeds the Krylov dimension {top.numel()} reached from the start "
                "vector; use a smaller k or another seed"
            )
        return top.cpu()
    found: list[Tensor] = []
    values: list[float] = []
    for i in range(k):
        lam, x = _power(op, found, 0.0, iters, tol, seed + i, device)
        if lam < 0:  # largest magnitude is negative: shift to find the algebraic top
            lam, x = _power(op, found, lam, iters, tol, seed + i, device)
        found.append(x)
        values.append(lam)
    return torch.tensor(sorted(values, reverse=True), dtype=torch.float64)


# ------------------------------------------------------- stochastic Lanczos quadrature
def spectral_density(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    iters: int = 30,
    n_probes: int = 1,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    r"""Nodes and weights of the Hessian's eigenvalue density by stochastic Lanczos quadrature.

    For a random unit vector :math:`q`, ``iters`` Lanczos steps give a tridiagonal matrix
    with eigenpairs :math:`(\theta_j, u_j)`; the Gauss quadrature
    :math:`\sum_j \tau_j\,\delta(\lambda - \theta_j)`, :math:`\tau_j = u_{j,1}^2`, matches
    the first :math:`2m - 1` moments of :math:`q^\top \delta(\lambda - H)\,q`, whose
    expectation is the spectral density :math:`\frac1N\sum_i \delta(\lambda - \lambda_i)`
    (Golub & Meurant 2010; Ghorbani et al. 2019). ``n_probes`` random starts are averaged.

    Parameters
    ----------
    loss_fn, params
        As in :func:`hvp`.
    iters : int
        Lanczos steps per probe, ``m >= 1``.
    n_probes : int
        Random start vectors (seeds ``seed, seed + 1, ...``).
    seed : int
        The first seed.

    Returns
    -------
    nodes, weights : torch.Tensor
        1-D float64 tensors; the weights are non-negative and sum to 1.
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_params(params)
    iters = check_int("iters", iters, 1)
    n_probes = check_int("n_probes", n_probes, 1)
    seed = check_int("seed", seed, 0)
    op = _HessianOperator(loss_fn, params)
    nodes, weights = [], []
    for i in range(n_probes):
        alpha, beta, _ = _lanczos(op, min(iters, op.n), seed + i, params[0].device)
        theta, U = torch.linalg.eigh(_tridiagonal(alpha, beta))
        nodes.append(theta.cpu())
        weights.append(U[0].cpu() ** 2 / n_probes)
    return torch.cat(nodes), torch.cat(weights)


def gaussian_density(nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float) -> Tensor:
    r"""The weighted sum of Gaussians :math:`\sum_j w_j\,\mathcal N(\lambda; \theta_j, \sigma^2)`
    on ``grid``: a smooth picture of :func:`spectral_density`'s output.

    Parameters
    ----------
    nodes, weights : torch.Tensor
        1-D tensors of equal length (weights non-negative).
    grid : torch.Tensor
        1-D tensor of the points :math:`\lambda` to evaluate at.
    sigma : float
        The kernel width, ``> 0``.

    Returns
    -------
    torch.Tensor
        1-D float64 tensor shaped like ``grid``.
    """
    nodes = check_float_tensor("nodes", nodes, ndim=1, shape="(m,)", finite=True)
    weights = check_float_tensor("weights", weights, ndim=1, shape="(m,)", finite=True)
    if weights.shape != nodes.shape or bool((weights < 0).any()):
        raise ValueError(
            f"weights must be non-negative and shaped like nodes {tuple(nodes.shape)}, "
            f"got {show(weights)}"
        )
    grid = check_float_tensor("grid", grid, ndim=1, shape="(g,)", finite=True)
    sigma = check_number("sigma", sigma, low=0.0, strict=True)
    z = (grid.double()[:, None] - nodes.double()[None, :]) / sigma
    return (torch.exp(-0.5 * z**2) @ weights.double()) / (sigma * math.sqrt(2 * math.pi))


# ------------------------------------------------------------------- landscape slices
def filter_normalized_direction(params: Sequence[Tensor], seed: int = 0) -> list[Tensor]:
    r"""A random direction scaled filter by filter to the weights (Li et al. 2018).

    Each parameter with two or more dimensions gets a Gaussian direction whose every
    *filter* (a slice ``d[i]`` along the first dimension: a row of an ``nn.Linear``
    weight, which produces one output unit, or one token's embedding) is rescaled to the
    norm of the same filter of the weights, :math:`d_i \leftarrow d_i\,
    \lVert\theta_i\rVert / \lVert d_i\rVert`; one-dimensional parameters (biases, norm
    gains) get zero, as in Li et al. Scale-invariant layers then look equally sharp
    whatever their weights' scale.

    Parameters
    ----------
    params : list of torch.Tensor
        The weights :math:`\theta` (need not require grad).
    seed : int
        Seeds the direction.

    Returns
    -------
    list of torch.Tensor
        The direction, shaped like ``params`` (float, detached).
    """
    params = _check_tensors("params", params)
    seed = check_int("seed", seed, 0)
    g = torch.Generator().manual_seed(seed)
    out = []
    for p in params:
        w = p.detach()
        if w.ndim < 2:
            out.append(torch.zeros_like(w))
            continue
        d = torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.device)
        rows, wrows = d.reshape(w.shape[0], -1), w.double().reshape(w.shape[0], -1)
        scale = wrows.norm(dim=1) / rows.norm(dim=1).clamp_min(1e-30)
        out.append((rows * scale[:, None]).reshape(w.shape).to(w.dtype))
    return out


def _check_tensors(name: str, value: object) -> list[Tensor]:
    if isinstance(value, Tensor) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list of tensors, got {show(value)}")
    out = list(value)
    for i, t in enumerate(out):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"{name}[{i}] must be a floating-point tensor, got {show(t)}")
    return out


def loss_slice(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    directions: Sequence[Sequence[Tensor]],
    coords: Sequence[Tensor],
    origin: Sequence[Tensor] | None = None,
) -> Tensor:
    r"""The loss on a line or a plane through parameter space (Li et al. 2018).

    With one direction :math:`d` and coordinates :math:`a_i`, entry :math:`i` is
    :math:`L(\theta_0 + a_i d)`; with two, entry :math:`(i, j)` is
    :math:`L(\theta_0 + a_i d_1 + b_j d_2)`. :math:`\theta_0` is ``origin`` (default: the
    current ``params``). ``params`` are overwritten for each evaluation (under
    ``torch.no_grad``) and restored at the end.

    Parameters
    ----------
    loss_fn : callable
        Zero-argument callable returning the scalar loss of ``params``.
    params : list of torch.Tensor
        The tensors the loss reads (e.g. ``list(model.parameters())``).
    directions : list
        One or two directions, each a list of tensors shaped like ``params``.
    coords : list of torch.Tensor
        One 1-D coordinate tensor per direction.
    origin : list of torch.Tensor, optional
        The centre :math:`\theta_0`, shaped like ``params``.

    Returns
    -------
    torch.Tensor
        float64, shape ``(len(a),)`` or ``(len(a), len(b))``.
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_tensors("params", params)
    if isinstance(directions, Tensor) or not isinstance(directions, Sequence):
        raise ValueError(
            f"directions must be a list of one or two directions, got {show(directions)}"
        )
    if len(directions) not in (1, 2):
        raise ValueError(f"directions must hold one or two directions, got {len(directions)}")
    dirs = [_check_vectors(f"directions[{i}]", d, params) for i, d in enumerate(directions)]
    if isinstance(coords, Tensor) or not isinstance(coords, Sequence) or len(coords) != len(dirs):
        raise ValueError(
            f"coords must be a list of {len(dirs)} 1-D tensors (one per direction), got "
            f"{show(coords)}"
        )
    axes = [
        check_float_tensor(f"coords[{i}]", c, ndim=1, shape="(m,)", finite=True)
        for i, c in enumerate(coords)
    ]
    saved = [p.detach().clone() for p in params]
    centre = saved if origin is None else _check_vectors("origin", origin, params)
    shape = tuple(len(a) for a in axes)
    out = torch.empty(shape, dtype=torch.float64)
    try:
        with torch.no_grad():
            for index in torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(
                -1, len(shape)
            ):
                ab = [float(axes[k][int(i)]) for k, i in enumerate(index)]
                for j, p in enumerate(params):
                    p.copy_(centre[j])
                    for k, d in enumerate(dirs):
                        p.add_(d[j], alpha=ab[k])
                out[tuple(int(i) for i in index)] = float(loss_fn())
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
    return out


# ------------------------------------------------------------------- edge of stability
@dataclass
class SharpnessTrace:
    """What :func:`gd_with_sharpness` records (Chapter 11).

    Attributes:
        lr: the step size :math:`\\eta`.
        losses: the loss before each step (``steps`` values).
        steps: the step numbers at which the sharpness was measured.
        sharpness: the top Hessian eigenvalue :math:`\\lambda_{\\max}` at those steps.
    """

    lr: float
    losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lr = check_number("lr", self.lr, low=0.0, strict=True)


def gd_with_sharpness(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    lr: float,
    steps: int,
    every: int = 10,
    power_iters: int = 20,
    seed: int = 0,
) -> SharpnessTrace:
    r"""Full-batch gradient descent :math:`\theta \leftarrow \theta - \eta\nabla L`, tracking
    the sharpness :math:`\lambda_{\max}(H)` by power iteration (Cohen et al. 2021).

    On a quadratic, gradient descent is stable iff :math:`\eta\,\lambda_{\max} < 2`; on a
    neural network the sharpness rises during training until it reaches about
    :math:`2/\eta` and then hovers there (the *edge of stability*) while the loss keeps
    falling, non-monotonically. ``params`` are updated in place.

    Parameters
    ----------
    loss_fn, params
        As in :func:`hvp` (the full batch is inside ``loss_fn``).
    lr : float
        The step size :math:`\eta > 0`.
    steps : int
        Gradient steps.
    every : int
        Measure the sharpness every this many steps (and at step 0).
    power_iters : int
        Power-iteration steps per measurement (warm-started from the previous vector).
    seed : int
        Seeds the first power-iteration vector.

    Returns
    -------
    SharpnessTrace
    """
    loss_fn = _check_loss_fn(loss_fn)
    params = _check_params(params)
    lr = check_number("lr", lr, low=0.0, strict=True)
    steps = check_int("steps", steps, 1)
    every = check_int("every", every, 1)
    power_iters = check_int("power_iters", power_iters, 1)
    seed = check_int("seed", seed, 0)
    trace = SharpnessTrace(lr=lr)
    x = _start_vector(sum(p.numel() for p in params), seed, params[0].device)
    for step in range(steps):
        if step % every == 0:
            op = _HessianOperator(loss_fn, params)
            lam = 0.0
            for _ in range(power_iters):  # warm start: few iterations suffice
                y = op.flat(x)
                lam, norm = float(torch.dot(x, y)), y.norm()
                if norm == 0:
                    break
                x = y / norm
            trace.steps.append(step)
            trace.sharpness.append(lam)
            del op
        loss = _scalar_loss(loss_fn)
        grads = _zeros_for_none(torch.autograd.grad(loss, params, allow_unused=True), params)
        trace.losses.append(float(loss.detach()))
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(g, alpha=lr)
    return trace


# ------------------------------------------------------------------- double descent
def random_relu_features(X: Tensor, p: int, seed: int = 0) -> Tensor:
    r"""Random ReLU features :math:`\phi(x) = \max(0, xW)/\sqrt p` with
    :math:`W_{ij} \sim \mathcal N(0, 1/d)` fixed by ``seed`` (Rahimi & Recht 2007).

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(n, d)``.
    p : int
        The number of features.
    seed : int
        Seeds :math:`W` (the same seed gives the same features for train and test).

    Returns
    -------
    torch.Tensor
        float64, shape ``(n, p)``.
    """
    X = check_float_tensor("X", X, ndim=2, shape="(n, d)", finite=True)
    p = check_int("p", p, 1)
    seed = check_int("seed", seed, 0)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(X.shape[1], p, generator=g, dtype=torch.float64) / math.sqrt(X.shape[1])
    return torch.relu(X.double().cpu() @ W) / math.sqrt(p)


def ridge_fit(F: Tensor, y: Tensor, ridge: float = 0.0) -> Tensor:
    r"""Least-squares weights :math:`w = \arg\min \lVert Fw - y\rVert^2 + \lambda\lVert w\rVert^2`.

    With ``ridge`` :math:`\lambda = 0` this is the *minimum-norm* solution
    :math:`F^{+}y` (the pseudo-inverse), the one gradient descent from zero converges to;
    it interpolates the data once there are at least as many features as points.

    Parameters
    ----------
    F : torch.Tensor
        Features, shape ``(n, p)``.
    y : torch.Tensor
        Targets, shape ``(n,)``.
    ridge : float
        :math:`\lambda \ge 0`.

    Returns
    -------
    torch.Tensor
        float64 weights, shape ``(p,)``.
    """
    F = check_float_tensor("F", F, ndim=2, shape="(n, p)", finite=True).double()
    y = check_float_tensor("y", y, ndim=1, shape="(n,)", finite=True).double()
    if y.shape[0] != F.shape[0]:
        raise ValueError(f"y must have {F.shape[0]} entries (the rows of F), got {y.shape[0]}")
    ridge = check_number("ridge", ridge, low=0.0)
    if ridge == 0:
        return torch.linalg.pinv(F, rtol=1e-12) @ y
    n, p = F.shape
    if p <= n:
        return torch.linalg.solve(F.T @ F + ridge * torch.eye(p, dtype=F.dtype), F.T @ y)
    return F.T @ torch.linalg.solve(F @ F.T + ridge * torch.eye(n, dtype=F.dtype), y)


# -------------------------------------------------------------- generalisation bounds
def occam_bound(train_error: float, n: int, log_hypotheses: float, delta: float = 0.05) -> float:
    r"""The finite-class (Occam) bound for a loss in :math:`[0, 1]`: with probability
    :math:`\ge 1 - \delta` over :math:`n` i.i.d. examples, every hypothesis :math:`h` in a
    class of size :math:`|\mathcal H|` has

    .. math::
        L(h) \le \hat L(h) + \sqrt{\frac{\ln|\mathcal H| + \ln(1/\delta)}{2n}}

    (Hoeffding plus a union bound). A model stored in :math:`b` bits per parameter has
    :math:`\ln|\mathcal H| = bN\ln 2`.

    Parameters
    ----------
    train_error : float
        :math:`\hat L \in [0, 1]`.
    n : int
        Training examples.
    log_hypotheses : float
        :math:`\ln|\mathcal H| \ge 0` (nats).
    delta : float
        The failure probability, in (0, 1).

    Returns
    -------
    float
        The bound (not clipped: a value above 1 is vacuous).
    """
    train_error = check_number("train_error", train_error, low=0.0, high=1.0)
    n = check_int("n", n, 1)
    log_hypotheses = check_number("log_hypotheses", log_hypotheses, low=0.0)
    delta = check_number("delta", delta, low=0.0, high=1.0, strict=True, high_strict=True)
    return train_error + math.sqrt((log_hypotheses + math.log(1 / delta)) / (2 * n))


def pac_bayes_bound(train_error: float, n: int, kl: float, delta: float = 0.05) -> float:
    r"""The PAC-Bayes bound (McAllester 1999, in Maurer's 2004 form) for a loss in
    :math:`[0, 1]`: with probability :math:`\ge 1 - \delta`, for every posterior :math:`Q`
    over weights and a prior :math:`P` chosen before seeing the data,

    .. math::
        \mathbb E_Q L \le \mathbb E_Q \hat L
        + \sqrt{\frac{\mathrm{KL}(Q\,\|\,P) + \ln(2\sqrt n/\delta)}{2n}}.

    For Gaussians :math:`Q = \mathcal N(\theta, \sigma^2 I)`,
    :math:`P = \mathcal N(\theta_0, \sigma^2 I)`:
    :math:`\mathrm{KL} = \lVert\theta - \theta_0\rVert^2 / 2\sigma^2`.

    Parameters
    ----------
    train_error : float
        :math:`\mathbb E_Q \hat L \in [0, 1]`.
    n : int
        Training examples.
    kl : float
        :math:`\mathrm{KL}(Q\|P) \ge 0` (nats).
    delta : float
        The failure probability, in (0, 1).

    Returns
    -------
    float
        The bound (not clipped: a value above 1 is vacuous).
    """
    train_error = check_number("train_error", train_error, low=0.0, high=1.0)
    n = check_int("n", n, 1)
    kl = check_number("kl", kl, low=0.0)
    delta = check_number("delta", delta, low=0.0, high=1.0, strict=True, high_strict=True)
    return train_error + math.sqrt((kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n))


__all__ = [
    "EIGEN_METHODS",
    "LossFn",
    "SharpnessTrace",
    "filter_normalized_direction",
    "finite_difference_hvp",
    "gaussian_density",
    "gd_with_sharpness",
    "hvp",
    "loss_slice",
    "occam_bound",
    "pac_bayes_bound",
    "random_relu_features",
    "ridge_fit",
    "spectral_density",
    "top_eigenvalues",
]
