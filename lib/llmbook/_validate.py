"""The input checks every module shares (CONVENTIONS §4).

Bad input gets a ``ValueError`` at the boundary that names the argument, the value and
what is allowed, instead of NaN, garbage, a hang or an obscure torch/NumPy error later.
Valid input in another common form is accepted: a NumPy scalar (``np.int64(3)``,
``np.float32(0.5)``) wherever a Python number is, and any integer dtype (``uint8``,
``int32``) wherever token ids are. Each check returns the value in its plain form
(a Python ``int``/``float``, an ``int64`` id tensor), so callers store that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened for an error message (tensors and arrays by dtype and shape)."""
    if isinstance(value, Tensor | np.ndarray):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer; False for ``bool`` (``True`` is not a count)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a real Python or NumPy number (int or float), not ``bool``."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python ``int``, if it is an integer in ``[low, high]``."""
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if low is not None and high is not None:
            what = f"an integer in [{low}, {high}]"
        elif low == 1:
            what = "a positive integer"
        elif low is not None:
            what = f"an integer >= {low}"
        else:
            what = "an integer" if high is None else f"an integer <= {high}"
        raise ValueError(f"{name} must be {what}, got {show(value)}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
    high_strict: bool = False,
    what: str | None = None,
) -> float:
    """``value`` as a Python ``float``, if it is a finite number between ``low`` and ``high``.

    ``strict`` excludes ``low`` itself, ``high_strict`` excludes ``high``. NaN and
    infinities are always refused; ``what`` replaces the generated description.
    """
    try:
        v = float(value) if is_number(value) else math.nan
    except OverflowError:  # an int beyond float's range
        v = math.nan
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if strict else v >= low
    if ok and high is not None:
        ok = v < high if high_strict else v <= high
    if not ok:
        if what is None:
            if low is not None and high is not None:
                what = (
                    f"a finite number in {'(' if strict else '['}{low}, {high}"
                    f"{')' if high_strict else ']'}"
                )
            elif low is not None:
                what = f"a finite number {'>' if strict else '>='} {low}"
            elif high is not None:
                what = f"a finite number {'<' if high_strict else '<='} {high}"
            else:
                what = "a finite number"
        raise ValueError(f"{name} must be {what}, got {show(value)}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a Python ``bool``, if it is one (or a NumPy bool)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {show(value)}")
    return bool(value)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value``, if it is one of the strings ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {show(value)}")
    return value


def check_type(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value``, if it is an instance of ``kind`` (described to the reader as ``what``)."""
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_float_dtype(name: str, dtype: Any) -> torch.dtype:
    """``dtype``, if it is a floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.dtype, got {show(dtype)}")
    return dtype


def check_float_tensor(
    name: str, value: Any, *, ndim: int | None = None, shape: str = "", finite: bool = False
) -> Tensor:
    """``value``, if it is a floating-point tensor (with ``ndim`` dimensions; ``shape``
    describes them in the message) and, with ``finite``, holds no NaN or infinity."""
    ok = isinstance(value, Tensor) and value.is_floating_point()
    if not ok or (ndim is not None and value.ndim != ndim):
        dims = f"{ndim}-d " if ndim is not None else ""
        raise ValueError(
            f"{name} must be a {dims}floating-point torch.Tensor{' ' + shape if shape else ''}, "
            f"got {show(value)}"
        )
    if finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must hold finite numbers only, got NaN or infinity")
    return value


def check_int_ids(
    name: str, value: Any, *, ndim: int | None = None, high: int | None = None
) -> Tensor:
    """``value`` as an ``int64`` tensor, if it is a tensor of an integer dtype (``uint8``,
    ``int32``, ``int64``…; not ``bool``) with ``ndim`` dimensions and ids in ``[0, high)``."""
    ok = isinstance(value, Tensor) and not value.is_floating_point() and not value.is_complex()
    if not ok or value.dtype == torch.bool or (ndim is not None and value.ndim != ndim):
        dims = f"{ndim}-d " if ndim is not None else ""
        raise ValueError(f"{name} must be a {dims}integer tensor of token ids, got {show(value)}")
    value = value.long()
    if value.numel() and (int(value.min()) < 0 or (high is not None and int(value.max()) >= high)):
        allowed = f"0..{high - 1}" if high is not None else ">= 0"
        raise ValueError(
            f"{name} has ids in [{int(value.min())}, {int(value.max())}]; allowed: {allowed}"
        )
    return value


def check_id_array(name: str, value: Any) -> np.ndarray:
    """``value``, if it is a 1-d NumPy array (or memmap) of an integer dtype (not bool)."""
    if (
        not isinstance(value, np.ndarray)
        or value.ndim != 1
        or not np.issubdtype(value.dtype, np.integer)
    ):
        raise ValueError(
            f"{name} must be a 1-d numpy array (or memmap) of integer token ids, got {show(value)}"
        )
    return value
