r"""Optimisers, learning-rate schedules and gradient clipping, from scratch (Chapter 8).

Every optimiser subclasses ``torch.optim.Optimizer``, so it plugs into any training loop,
and updates all the tensors of a parameter group at once with ``torch._foreach_*`` ops
(no Python loop over elements):

* :class:`SGD` — momentum, Nesterov momentum, dampening and (coupled) weight decay, as
  ``torch.optim.SGD`` defines them;
* :class:`Adam` and :class:`AdamW` — bias-corrected moments; AdamW decays the weights
  directly (decoupled weight decay, Loshchilov & Hutter 2019). Both follow the operation
  order of ``torch.optim``'s multi-tensor ("foreach") implementation, so in float32 their
  results are *bit-identical* to ``torch.optim.Adam``/``AdamW(foreach=True)`` (tested);
  the state dicts have the same keys, so checkpoints move between the two;
* :class:`Adam8bit` — Adam with both moments stored in 8 bits, block-wise quantised with the
  dynamic map of Dettmers et al. (2022) (:func:`dynamic_map`,
  :func:`llmbook.quant.quantize_blockwise`);
* :class:`SAM` — sharpness-aware minimisation (Foret et al. 2021) around any base optimiser.

The schedules are plain functions of the step (or of tokens seen): :func:`constant`,
:func:`warmup_cosine` (GPT-3), :func:`inverse_sqrt` (the original Transformer) and
:func:`warmup_stable_decay`. :func:`clip_grad_norm` equals
``torch.nn.utils.clip_grad_norm_``; :func:`optimizer_state_bytes` measures an optimiser's
memory. Gradient accumulation is :func:`llmbook.train.accumulate_gradients`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from llmbook._validate import check_bool, check_choice, check_int, check_number, show
from llmbook.quant import dequantize_blockwise, quantize_blockwise

#: The decay shapes of :func:`warmup_stable_decay`.
DECAY_SHAPES: tuple[str, ...] = ("linear", "cosine", "1-sqrt")


# ------------------------------------------------------------------------------ checks
def _check_betas(betas: object) -> tuple[float, float]:
    ok = isinstance(betas, tuple | list) and len(betas) == 2
    if ok:
        try:
            b = (float(betas[0]), float(betas[1]))  # type: ignore[index]
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(0.0 <= x < 1.0 for x in b)
    if not ok:
        raise ValueError(f"betas must be two numbers in [0, 1), got {show(betas)}")
    return b


def _check_closure(closure: object) -> Callable[[], Any] | None:
    if closure is not None and not callable(closure):
        raise ValueError(f"closure must be a callable or None, got {show(closure)}")
    return closure  # type: ignore[return-value]


def _check_param_list(params: object) -> list[Any]:
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, str | bytes) or not isinstance(params, Iterable):
        raise ValueError(f"params must be an iterable of tensors or groups, got {show(params)}")
    params = list(params)
    if not params:
        raise ValueError("params must not be empty (the optimiser would have nothing to do)")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor | dict):
            raise ValueError(f"params[{i}] must be a tensor or a dict group, got {show(p)}")
    return params


def _scalar_dtype() -> torch.dtype:
    # torch.optim keeps the step counter in the default dtype's precision
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _with_grad(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
    params = [p for p in group["params"] if p.grad is not None]
    for p in params:
        if p.grad.is_sparse:
            raise ValueError("sparse gradients are not supported (params must have dense .grad)")
    return params, [p.grad for p in params]


def _loss_of(closure: object) -> Any:
    """``closure()`` with gradients enabled (``step`` runs under no_grad), or None."""
    closure = _check_closure(closure)
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _groups_with_grad(
    groups: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], list[Tensor], list[Tensor]]]:
    """``(group, params, grads)`` for every group with at least one gradient."""
    for group in groups:
        params, grads = _with_grad(group)
        if params:
            yield group, params, grads


# ---------------------------------------------------------------------------------- SGD
class SGD(torch.optim.Optimizer):
    r"""Stochastic gradient descent with momentum (Chapter 8), as ``torch.optim.SGD``.

    With gradient :math:`\mathbf g_s` (plus :math:`\lambda\theta` if ``weight_decay``),
    momentum :math:`\mu` and dampening :math:`\tau`:

    .. math::
        \mathbf b_1 = \mathbf g_1,\quad
        \mathbf b_s = \mu\,\mathbf b_{s-1} + (1-\tau)\,\mathbf g_s,\qquad
        \theta_s = \theta_{s-1} - \eta\,\mathbf d_s,

    with :math:`\mathbf d_s = \mathbf b_s`, or :math:`\mathbf g_s + \mu\mathbf b_s` for
    Nesterov momentum (:math:`\mathbf d_s = \mathbf g_s` without momentum).

    Parameters
    ----------
    params : Sequence of torch.Tensor or dict
        The parameters, or parameter groups (dicts with ``"params"`` and overrides).
    lr : float
        The learning rate :math:`\eta \ge 0`.
    momentum : float
        :math:`\mu \in [0, 1)`.
    dampening : float
        :math:`\tau \in [0, 1]`; must be 0 with ``nesterov``.
    weight_decay : float
        :math:`\lambda \ge 0`, added to the gradient (an :math:`\ell_2` penalty).
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        params = _check_param_list(params)
        lr = check_number("lr", lr, low=0.0)
        momentum = check_number("momentum", momentum, low=0.0, high=1.0, high_strict=True)
        dampening = check_number("dampening", dampening, low=0.0, high=1.0)
        weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        nesterov = check_bool("nesterov", nesterov)
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={momentum}"
                f" and dampening={dampening}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = _loss_of(closure)
        for group, params, grads in _groups_with_grad(self.param_groups):
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            if wd != 0:
                grads = torch._foreach_add(grads, params, alpha=wd)
            if mu != 0:
                bufs = [self.state[p].get("momentum_buffer") for p in params]
                if all(b is not None for b in bufs):
                    torch._foreach_mul_(bufs, mu)
                    torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
                else:  # first step: the buffer starts as the gradient itself
                    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                        if bufs[i] is None:
                            bufs[i] = self.state[p]["momentum_buffer"] = g.detach().clone()
                        else:
                            bufs[i].mul_(mu).add_(g, alpha=1 - group["dampening"])
                if group["nesterov"]:
                    grads = torch._foreach_add(grads, bufs, alpha=mu)
                else:
                    grads = bufs
            torch._foreach_add_(params, grads, alpha=-lr)
        return loss


# --------------------------------------------------------------------------------- Adam
class Adam(torch.optim.Optimizer):
    r"""Adam (Kingma & Ba 2015) with bias correction (Chapter 8), as ``torch.optim.Adam``.

    .. math::
        \begin{aligned}
        \mathbf m_s &= \beta_1\mathbf m_{s-1} + (1-\beta_1)\mathbf g_s,\quad
        \mathbf v_s = \beta_2\mathbf v_{s-1} + (1-\beta_2)\mathbf g_s^2,\\
        \theta_s &= \theta_{s-1} - \eta\,\frac{\mathbf m_s/(1-\beta_1^s)}
        {\sqrt{\mathbf v_s/(1-\beta_2^s)} + \epsilon}.
        \end{aligned}

    ``weight_decay`` :math:`\lambda` adds :math:`\lambda\theta` to the gradient (coupled, an
    :math:`\ell_2` penalty); :class:`AdamW` decouples it. The operations follow
    ``torch.optim``'s multi-tensor implementation one for one (``lerp`` for
    :math:`\mathbf m`, the step size :math:`-\eta/(1-\beta_1^s)` folded into one
    ``addcdiv``), so float32 results are bit-identical to ``torch.optim.Adam(foreach=True)``
    and the state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) is the same.

    Parameters
    ----------
    params : Sequence of torch.Tensor or dict
        The parameters, or parameter groups.
    lr : float
        :math:`\eta \ge 0`.
    betas : tuple of float
        :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
    eps : float
        :math:`\epsilon \ge 0`, added to :math:`\sqrt{\hat{\mathbf v}}`.
    weight_decay : float
        :math:`\lambda \ge 0`.
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        params = _check_param_list(params)
        defaults = dict(
            lr=check_number("lr", lr, low=0.0),
            betas=_check_betas(betas),
            eps=check_number("eps", eps, low=0.0),
            weight_decay=check_number("weight_decay", weight_decay, low=0.0),
        )
        super().__init__(params, defaults)

    def _state_of(self, params: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return (
            [self.state[p]["exp_avg"] for p in params],
            [self.state[p]["exp_avg_sq"] for p in params],
            [self.state[p]["step"] for p in params],
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = _loss_of(closure)
        for group, params, grads in _groups_with_grad(self.param_groups):
            m, v, steps = self._state_of(params)
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd = group["weight_decay"]
            torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
            if wd != 0:
                if self._decoupled:  # AdamW: theta <- theta (1 - lr lambda)
                    torch._foreach_mul_(params, 1 - lr * wd)
                else:  # Adam: g <- g + lambda theta
                    grads = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_lerp_(m, grads, 1 - beta1)  # m + (1 - b1)(g - m)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
            bc1 = [1 - beta1 ** s.item() for s in steps]  # bias corrections
            bc2_sqrt = [(1 - beta2 ** s.item()) ** 0.5 for s in steps]
            step_size = [(lr / bc) * -1 for bc in bc1]
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, step_size)
        return loss


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay (Chapter 8).

    Before the Adam step every parameter is shrunk, :math:`\theta \leftarrow
    \theta(1 - \eta\lambda)`, instead of :math:`\lambda\theta` joining the gradient (where
    Adam's division by :math:`\sqrt{\hat{\mathbf v}}` would rescale it). Bit-identical in
    float32 to ``torch.optim.AdamW(foreach=True)``; the optimiser of
    :func:`llmbook.train.configure_optimizer`. Parameters as :class:`Adam`, with
    ``weight_decay`` defaulting to 0.01 as in torch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One AdamW update (``Adam.step`` with decoupled decay); returns ``closure()``."""
        return super().step(closure)


# ------------------------------------------------------------------------- 8-bit states
def dynamic_map(signed: bool = True) -> Tensor:
    r"""The 256 values of the 8-bit *dynamic* quantisation map (Dettmers et al. 2022).

    A code is a sign bit (``signed``), then a run of zeros whose length :math:`e` sets a
    decimal exponent :math:`10^{-e}`, an indicator bit, and the remaining bits as a linear
    fraction in :math:`[0.1, 1]`: small magnitudes get few fraction bits but still exist
    down to :math:`\approx 10^{-7}`, large ones get up to 6 (signed) or 7 bits. This is
    ``bitsandbytes.functional.create_dynamic_map(signed, max_exponent_bits=7,
    total_bits=8)``: sorted, in :math:`[-1, 1]` (signed) or :math:`[0, 1]`, containing 0
    and 1.

    Parameters
    ----------
    signed : bool
        True for the first moment (any sign), False for the second (non-negative).

    Returns
    -------
    torch.Tensor
        The 256 code values, float32, ascending.
    """
    signed = check_bool("signed", signed)
    values: list[float] = []
    exponent_bits = 7
    for i in range(exponent_bits):
        # each exponent 10^(i-6) gets 2^i (signed) or 2^(i+1) linear fraction steps
        n = 2**i if signed else 2 ** (i + 1)
        bounds = torch.linspace(0.1, 1, n + 1)
        means = ((bounds[:-1] + bounds[1:]) / 2.0).tolist()
        scale = 10 ** (-(exponent_bits - 1) + i)
        values += [scale * x for x in means]
        if signed:
            values += [-scale * x for x in means]
    values += [0.0, 1.0]
    assert len(values) == 256
    return torch.tensor(sorted(values), dtype=torch.float32)


class Adam8bit(torch.optim.Optimizer):
    r"""Adam with 8-bit block-wise quantised moments (Dettmers et al. 2022) (Chapter 8).

    Each step dequantises :math:`\mathbf m` and :math:`\mathbf v`, takes the AdamW step of
    :class:`AdamW` in float32, and quantises the new moments again with
    :func:`llmbook.quant.quantize_blockwise`: :math:`\mathbf m` with the signed :func:`dynamic_map`,
    :math:`\mathbf v` with the unsigned one, one float32 maximum per block of
    ``block_size`` = 2048 values (the paper's block). The state costs
    :math:`2 + 8/2048` bytes per parameter instead of 8. As in ``bitsandbytes``, tensors
    with fewer than ``min_8bit_size`` elements (biases, norm gains) keep float32 moments.
    Weight decay is decoupled (AdamW).

    Parameters
    ----------
    params, lr, betas, eps, weight_decay
        As in :class:`AdamW` (``weight_decay`` defaults to 0 here).
    block_size : int
        Values per quantisation block.
    min_8bit_size : int
        Smallest tensor (in elements) whose moments are stored in 8 bits.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        block_size: int = 2048,
        min_8bit_size: int = 4096,
    ) -> None:
        params = _check_param_list(params)
        defaults = dict(
            lr=check_number("lr", lr, low=0.0),
            betas=_check_betas(betas),
            eps=check_number("eps", eps, low=0.0),
            weight_decay=check_number("weight_decay", weight_decay, low=0.0),
            block_size=check_int("block_size", block_size, 1),
            min_8bit_size=check_int("min_8bit_size", min_8bit_size, 0),
        )
        super().__init__(params, defaults)
        self._codes = {True: dynamic_map(signed=True), False: dynamic_map(signed=False)}

    def _moments(self, p: Tensor, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        state = self.state[p]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            if p.numel() >= group["min_8bit_size"]:
                n_blocks = -(-p.numel() // group["block_size"])
                for name in ("m", "v"):
                    state[f"{name}_q"] = torch.zeros(p.numel(), dtype=torch.uint8, device=p.device)
                    state[f"{name}_absmax"] = torch.zeros(n_blocks, device=p.device)
            else:
                state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
        if "exp_avg" in state:
            return state["exp_avg"], state["exp_avg_sq"]
        bs = group["block_size"]
        m = dequantize_blockwise(state["m_q"], state["m_absmax"], self._codes[True], p.shape, bs)
        v = dequantize_blockwise(state["v_q"], state["v_absmax"], self._codes[False], p.shape, bs)
        return m, v

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = _loss_of(closure)
        for group, params, grads in _groups_with_grad(self.param_groups):
            moments = [self._moments(p, group) for p in params]
            m, v = [a for a, _ in moments], [b for _, b in moments]
            steps = [self.state[p]["step"] for p in params]
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            grads = [g.float() for g in grads]
            torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
            if group["weight_decay"] != 0:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
            bc2_sqrt = [(1 - beta2 ** s.item()) ** 0.5 for s in steps]
            step_size = [-lr / (1 - beta1 ** s.item()) for s in steps]
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, step_size)
            for p, mi, vi in zip(params, m, v, strict=True):  # store the new moments
                state = self.state[p]
                if "m_q" in state:
                    bs = group["block_size"]
                    state["m_q"], state["m_absmax"] = quantize_blockwise(mi, self._codes[True], bs)
                    state["v_q"], state["v_absmax"] = quantize_blockwise(vi, self._codes[False], bs)
        return loss


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors of an optimiser's state (moments, codes, block maxima;
    not the scalar step counters) (Chapter 8).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimiser (the book's or torch's).

    Returns
    -------
    int
        The sum of ``numel * element_size`` over its non-scalar state tensors.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {show(optimizer)}")
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if isinstance(t, Tensor) and t.ndim > 0
    )


# ---------------------------------------------------------------------------------- SAM
class SAM(torch.optim.Optimizer):
    r"""Sharpness-aware minimisation (Foret et al. 2021) around a base optimiser (Ch. 8).

    SAM minimises :math:`\max_{\lVert\boldsymbol\varepsilon\rVert_2 \le \rho}
    L(\theta + \boldsymbol\varepsilon)`. To first order the inner maximum is at

    .. math::
        \hat{\boldsymbol\varepsilon}
        = \rho\,\frac{\nabla L(\theta)}{\lVert\nabla L(\theta)\rVert_2},

    so each step climbs to :math:`\theta + \hat{\boldsymbol\varepsilon}`
    (``first_step``), takes the gradient there, returns to :math:`\theta` and lets the
    base optimiser step with that gradient (``second_step``): two gradients per step.
    The norm is over all parameters together.

    Parameters
    ----------
    params : Sequence of torch.Tensor or dict
        The parameters, or parameter groups.
    base_optimizer : type
        An optimiser class (default :class:`SGD`), built on the same parameter groups.
    rho : float
        The radius :math:`\rho > 0` of the neighbourhood.
    **kwargs
        The base optimiser's arguments (``lr``, ``momentum``, ...).
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = SGD,
        rho: float = 0.05,
        **kwargs: Any,
    ) -> None:
        params = _check_param_list(params)
        rho = check_number("rho", rho, low=0.0, strict=True)
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise ValueError(
                f"base_optimizer must be a torch.optim.Optimizer class, got {show(base_optimizer)}"
            )
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups, shared
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self) -> None:
        r"""Climb: :math:`\theta \leftarrow \theta + \rho\,\mathbf g/\lVert\mathbf g\rVert_2`
        with the current gradients (remembered for ``second_step``)."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            raise ValueError("first_step needs gradients: call backward() first")
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2)))
        for group in self.param_groups:
            params, grads = _with_grad(group)
            if not params:
                continue
            eps = torch._foreach_mul(grads, float(group["rho"] / (norm + 1e-12)))
            for p, e in zip(params, eps, strict=True):
                self.state[p]["e_w"] = e
            torch._foreach_add_(params, eps)

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to :math:`\\theta` and step the base optimiser with the current gradients
        (those taken at the perturbed point)."""
        for group in self.param_groups:
            params = [p for p in group["params"] if "e_w" in self.state[p]]
            if params:
                torch._foreach_sub_(params, [self.state[p].pop("e_w") for p in params])
        self.base_optimizer.step()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """A full SAM step. ``closure`` must zero the gradients, compute the loss, call
        ``backward()`` and return the loss; it runs twice. Returns the loss at :math:`\\theta`."""
        closure = _check_closure(closure)
        if closure is None:
            raise ValueError("closure must be given: SAM needs two gradients per step")
        with torch.enable_grad():
            loss = closure()
        self.first_step()
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss


# ---------------------------------------------------------------------------- clipping
def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    r"""Scale all gradients together so their global L2 norm is at most ``max_norm`` (Ch. 8).

    .. math::
        \lVert\mathbf g\rVert_2 = \Big(\sum_p \lVert\mathbf g_p\rVert_2^2\Big)^{1/2},\qquad
        \mathbf g \leftarrow \mathbf g\cdot\min\Big(1, \frac{c}{\lVert\mathbf g\rVert_2
        + 10^{-6}}\Big).

    The :math:`10^{-6}` is torch's guard against dividing by zero; the result equals
    ``torch.nn.utils.clip_grad_norm_`` (the same gradients and returned norm, tested).

    Parameters
    ----------
    params : Sequence of torch.Tensor
        Parameters; those without ``.grad`` are skipped.
    max_norm : float
        The threshold :math:`c > 0`.

    Returns
    -------
    torch.Tensor
        The norm before clipping (a 0-d tensor).
    """
    if isinstance(params, Tensor):
        params = [params]
    if isinstance(params, str | bytes) or not isinstance(params, Iterable):
        raise ValueError(f"params must be an iterable of tensors, got {show(params)}")
    params = list(params)
    if not all(isinstance(p, Tensor) for p in params):
        raise ValueError(f"params must be an iterable of tensors, got {show(params)}")
    max_norm = check_number("max_norm", max_norm, low=0.0, strict=True)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch._foreach_norm(grads, 2.0)
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef)
    return total


# --------------------------------------------------------------------------- schedules
def _check_step(step: object) -> float:
    return check_number("step", step, low=0.0)


def constant(step: float, *, lr: float) -> float:
    r"""The constant schedule :math:`\eta_s = \eta` (Chapter 8).

    Parameters
    ----------
    step : float
        The step (or tokens seen), :math:`\ge 0`.
    lr : float
        :math:`\eta \ge 0`.

    Returns
    -------
    float
        ``lr``.
    """
    _check_step(step)
    return check_number("lr", lr, low=0.0)


def warmup_cosine(
    step: float,
    *,
    peak_lr: float,
    min_lr: float,
    warmup_steps: float,
    total_steps: float,
    offset: int = 0,
) -> float:
    r"""Linear warmup, then cosine decay to a floor, as in GPT-3 (Chapter 8).

    .. math::
        \eta_s = \begin{cases}
        \eta_{\max}\,(s + o)/W & s < W,\\
        \eta_{\min} + \tfrac12(\eta_{\max} - \eta_{\min})\big(1 + \cos\pi\tfrac{s-W}{S-W}\big)
        & W \le s < S,\\
        \eta_{\min} & s \ge S.
        \end{cases}

    ``s``, ``W`` and ``S`` may count steps or tokens. The offset :math:`o` picks the warmup
    convention: 0 is Hugging Face's ``get_cosine_with_min_lr_schedule_with_warmup`` (the
    first step has learning rate 0), 1 is :func:`llmbook.train.lr_at`'s (the step being
    taken counts, so the first step already moves).

    Parameters
    ----------
    step : float
        :math:`s \ge 0`.
    peak_lr, min_lr : float
        :math:`\eta_{\max} > 0` and :math:`0 \le \eta_{\min} \le \eta_{\max}`.
    warmup_steps, total_steps : float
        :math:`0 \le W \le S`, :math:`S > 0`.
    offset : int
        0 or 1.

    Returns
    -------
    float
        :math:`\eta_s`.
    """
    step = _check_step(step)
    peak_lr = check_number("peak_lr", peak_lr, low=0.0, strict=True)
    min_lr = check_number("min_lr", min_lr, low=0.0, high=peak_lr)
    total_steps = check_number("total_steps", total_steps, low=0.0, strict=True)
    warmup_steps = check_number("warmup_steps", warmup_steps, low=0.0, high=total_steps)
    offset = check_int("offset", offset, 0, 1)
    if step < warmup_steps:
        return peak_lr * (step + offset) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def inverse_sqrt(step: float, *, warmup_steps: float, scale: float = 1.0) -> float:
    r"""The original Transformer's schedule (Vaswani et al. 2017) (Chapter 8).

    .. math::
        \eta_s = c\,\min\big(s^{-1/2},\ s\,W^{-3/2}\big),

    a linear warmup to its peak :math:`c/\sqrt W` at :math:`s = W`, then decay as
    :math:`1/\sqrt s`; :math:`\eta_0 = 0`. The paper's :math:`c = d_{\text{model}}^{-1/2}`
    (512 wide, :math:`W` = 4000: a peak of :math:`7.0\times10^{-4}`). With
    :math:`c = \eta_{\max}\sqrt W` it equals Hugging Face's ``get_inverse_sqrt_schedule``
    (``timescale = W``).

    Parameters
    ----------
    step : float
        :math:`s \ge 0`.
    warmup_steps : float
        :math:`W > 0`.
    scale : float
        :math:`c > 0`.

    Returns
    -------
    float
        :math:`\eta_s`.
    """
    step = _check_step(step)
    warmup_steps = check_number("warmup_steps", warmup_steps, low=0.0, strict=True)
    scale = check_number("scale", scale, low=0.0, strict=True)
    if step == 0:
        return 0.0
    return scale * min(step**-0.5, step * warmup_steps**-1.5)


def warmup_stable_decay(
    step: float,
    *,
    peak_lr: float,
    warmup_steps: float,
    stable_steps: float,
    decay_steps: float,
    min_lr: float = 0.0,
    decay: str = "linear",
) -> float:
    r"""Warmup-stable-decay (WSD): warm up, hold the peak, then decay fast (Chapter 8).

    .. math::
        \eta_s = \begin{cases}
        \eta_{\max}\,s/W & s < W,\\
        \eta_{\max} & W \le s < W + S_{\text{stable}},\\
        \eta_{\min} + (\eta_{\max} - \eta_{\min})\,f(p) & \text{during the decay},\\
        \eta_{\min} & \text{after it},
        \end{cases}

    with :math:`p` the fraction of the decay done and :math:`f(p) = 1 - p` (linear),
    :math:`\tfrac12(1 + \cos\pi p)` (cosine) or :math:`1 - \sqrt p` ("1-sqrt"). The stable
    phase can be extended and the decay run from any checkpoint. Equals Hugging Face's
    ``get_wsd_schedule`` (whose warmup starts at :math:`\eta_{\min}`; equal when
    :math:`\eta_{\min} = 0` or after the warmup).

    Parameters
    ----------
    step : float
        :math:`s \ge 0`.
    peak_lr, min_lr : float
        :math:`\eta_{\max} > 0`, :math:`0 \le \eta_{\min} \le \eta_{\max}`.
    warmup_steps, stable_steps, decay_steps : float
        The lengths of the three phases (:math:`\ge 0`; ``decay_steps > 0``).
    decay : str
        The shape of the decay.

    Returns
    -------
    float
        :math:`\eta_s`.
    """
    step = _check_step(step)
    peak_lr = check_number("peak_lr", peak_lr, low=0.0, strict=True)
    min_lr = check_number("min_lr", min_lr, low=0.0, high=peak_lr)
    warmup_steps = check_number("warmup_steps", warmup_steps, low=0.0)
    stable_steps = check_number("stable_steps", stable_steps, low=0.0)
    decay_steps = check_number("decay_steps", decay_steps, low=0.0, strict=True)
    decay = check_choice("decay", decay, DECAY_SHAPES)
    if step < warmup_steps:
        return peak_lr * (step / warmup_steps)
    if step < warmup_steps + stable_steps:
        return peak_lr
    p = (step - warmup_steps - stable_steps) / decay_steps
    if p >= 1.0:
        return min_lr
    if decay == "linear":
        f = 1.0 - p
    elif decay == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        f = 1.0 - math.sqrt(p)
    return min_lr + (peak_lr - min_lr) * f


__all__ = [
    "DECAY_SHAPES",
    "SAM",
    "SGD",
    "Adam",
    "Adam8bit",
    "AdamW",
    "clip_grad_norm",
    "constant",
    "dynamic_map",
    "inverse_sqrt",
    "optimizer_state_bytes",
    "warmup_cosine",
    "warmup_stable_decay",
]
