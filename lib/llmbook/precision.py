r"""Number formats for training: ranges, underflow, loss scaling, bytes (Chapter 9).

A float with :math:`e` exponent bits and :math:`f` fraction bits has machine epsilon
:math:`2^{-f}`, smallest normal number :math:`2^{2 - 2^{e-1}}` and smallest subnormal
:math:`2^{2 - 2^{e-1} - f}`. float16 (:math:`e = 5, f = 10`) flushes gradients below
:math:`2^{-24} \approx 6\times10^{-8}` to zero; *loss scaling* multiplies the loss by
:math:`S` so that the gradients :math:`S\,\mathbf g` stay representable, and divides them
by :math:`S` in float32 before the update. :class:`LossScaler` adjusts :math:`S` the way
``torch.amp.GradScaler`` does: halve it and skip the step when a gradient overflows,
double it after ``growth_interval`` clean steps (Micikevicius et al. 2018).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from llmbook._validate import check_float_dtype, check_int, check_number, check_type

#: Bytes per parameter of mixed-precision training with Adam (Micikevicius et al. 2018;
#: Rajbhandari et al. 2020): 16-bit weights and gradients for the passes, float32 master
#: weights and moments for the update.
MIXED_PRECISION_ADAM_BYTES: dict[str, int] = {
    "16-bit weights": 2,
    "16-bit gradients": 2,
    "float32 master weights": 4,
    "Adam m (float32)": 4,
    "Adam v (float32)": 4,
}
#: The same for plain float32 training with Adam (weights, gradients, m and v).
FLOAT32_ADAM_BYTES: dict[str, int] = {
    "float32 weights": 4,
    "float32 gradients": 4,
    "Adam m (float32)": 4,
    "Adam v (float32)": 4,
}


def format_info(dtype: torch.dtype) -> dict[str, float]:
    r"""Range and precision of a floating-point format, from ``torch.finfo`` (Chapter 9).

    Returns ``bits``, ``eps`` (the gap after 1, :math:`2^{-f}`), ``max``,
    ``smallest_normal`` and ``smallest_subnormal`` (``smallest_normal * eps``), and
    ``decimal_digits`` (:math:`f \log_{10} 2`, ``finfo.resolution``'s exponent).
    """
    dtype = check_float_dtype("dtype", dtype)
    fi = torch.finfo(dtype)
    return {
        "bits": float(fi.bits),
        "eps": fi.eps,
        "max": fi.max,
        "smallest_normal": fi.smallest_normal,
        "smallest_subnormal": fi.smallest_normal * fi.eps,
        "decimal_digits": -torch.tensor(fi.eps, dtype=torch.float64).log10().item(),
    }


def underflow_fractions(values: Tensor | Iterable[Tensor], dtype: torch.dtype) -> dict[str, float]:
    r"""What casting float32 ``values`` (one tensor or several) to ``dtype`` does to them.

    Over the nonzero finite entries: ``zero``, the fraction that becomes 0 (underflow);
    ``subnormal``, the fraction that lands below the smallest normal number (kept with
    fewer significant bits); ``overflow``, the fraction that becomes infinite.
    """
    dtype = check_float_dtype("dtype", dtype)
    if isinstance(values, Tensor):
        values = [values]
    parts = []
    for i, v in enumerate(values):
        check_type(f"values[{i}]", v, Tensor, "a tensor")
        if not v.dtype.is_floating_point:
            raise ValueError(f"values[{i}] must be a floating-point tensor, got {v.dtype}")
        parts.append(v.detach().reshape(-1).float())
    if not parts:
        raise ValueError("values must hold at least one tensor, got none")
    x = torch.cat(parts)
    x = x[torch.isfinite(x) & (x != 0)]
    if x.numel() == 0:
        raise ValueError("values must hold at least one nonzero finite entry")
    y = x.to(dtype)
    tiny = torch.finfo(dtype).smallest_normal
    n = x.numel()
    return {
        "zero": (y == 0).sum().item() / n,
        "subnormal": ((y != 0) & (y.abs() < tiny)).sum().item() / n,
        "overflow": torch.isinf(y).sum().item() / n,
    }


class LossScaler:
    r"""Dynamic loss scaling with ``torch.amp.GradScaler``'s rule (Chapter 9).

    ``scale_loss(loss)`` returns :math:`S \cdot` loss; after ``backward``,
    ``unscale_(params)`` divides the gradients by :math:`S` and says whether any is
    infinite or NaN; ``step(optimizer, params)`` unscales and steps unless a gradient
    overflowed (then the step is skipped); ``update()`` then sets

    .. math::
        S \leftarrow \begin{cases} S \cdot \text{backoff} & \text{overflow,} \\
        S \cdot \text{growth} & \text{after growth\_interval clean steps in a row,}
        \\ S & \text{otherwise.} \end{cases}
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        self.scale = check_number("init_scale", init_scale, low=0, strict=True)
        self.growth_factor = check_number("growth_factor", growth_factor, low=1, strict=True)
        self.backoff_factor = check_number(
            "backoff_factor", backoff_factor, low=0, high=1, strict=True, high_strict=True
        )
        self.growth_interval = check_int("growth_interval", growth_interval, 1)
        self.clean_steps = 0  # steps without overflow since the last change of scale
        self.found_inf = False

    def scale_loss(self, loss: Tensor) -> Tensor:
        """The loss times the current scale, to call ``backward`` on."""
        check_type("loss", loss, Tensor, "a tensor")
        if loss.numel() != 1:
            raise ValueError(f"loss must be a scalar tensor, got shape {tuple(loss.shape)}")
        return loss * self.scale

    def unscale_(self, params: Iterable[Tensor]) -> bool:
        """Divide every gradient by the scale in place; True if any is inf or NaN."""
        params = list(params)
        if not all(isinstance(p, Tensor) for p in params):
            raise ValueError("params must be an iterable of tensors")
        found = False
        for p in params:
            if p.grad is not None:
                p.grad.div_(self.scale)
                found = found or not bool(torch.isfinite(p.grad).all())
        self.found_inf = found
        return found

    def step(self, optimizer: torch.optim.Optimizer, params: Iterable[Tensor]) -> bool:
        """Unscale and take ``optimizer``'s step unless a gradient overflowed.

        Returns True if the step was taken. Call :meth:`update` afterwards."""
        check_type("optimizer", optimizer, torch.optim.Optimizer, "a torch optimizer")
        if self.unscale_(params):
            return False
        optimizer.step()
        return True

    def update(self) -> float:
        """Back off after an overflow, grow after ``growth_interval`` clean steps; the new
        scale."""
        if self.found_inf:
            self.scale *= self.backoff_factor
            self.clean_steps = 0
        else:
            self.clean_steps += 1
            if self.clean_steps == self.growth_interval:
                self.scale *= self.growth_factor
                self.clean_steps = 0
        self.found_inf = False
        return self.scale


__all__ = [
    "FLOAT32_ADAM_BYTES",
    "MIXED_PRECISION_ADAM_BYTES",
    "LossScaler",
    "format_info",
    "underflow_fractions",
]
