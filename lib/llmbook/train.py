r"""The pretraining loop: AdamW, warmup and cosine decay, clipping, accumulation (Chapter 7).

One optimisation step :math:`s` (counting from 0) does, in order:

1. Draw :math:`k` = ``grad_accum_steps`` micro-batches of ``batch_size`` windows with
   :func:`llmbook.data.get_batch` and a ``torch.Generator`` seeded from ``cfg.seed``.
2. Accumulate the gradient of their mean loss,
   :math:`g = \nabla_\theta \frac1k \sum_{i=1}^k L_i(\theta)` (:func:`accumulate_gradients`),
   which equals the gradient of one batch of :math:`k \cdot` ``batch_size`` windows.
3. Clip it to norm at most :math:`c` = ``grad_clip``:
   :math:`g \leftarrow g \cdot \min\!\big(1, c / \lVert g \rVert_2\big)`.
4. Take an AdamW step (:func:`configure_optimizer`: the book's
   :class:`llmbook.optim.AdamW`, bit-identical to ``torch.optim.AdamW(foreach=True)``)
   with the learning rate :math:`\eta_s` of :func:`lr_at` (:func:`llmbook.optim.warmup_cosine`).

:func:`train` repeats this for ``max_steps`` steps, evaluates on held-out tokens every
``eval_interval`` steps (:func:`evaluate`), shows a progress bar and returns a
:class:`History` to plot. A checkpoint (:func:`save_checkpoint`) holds everything the next
step depends on — weights, AdamW's moments, the step counter, the batch generator's state,
torch's random state and the history — so training ``N`` steps straight and training
``N/2``, saving, and resuming in a fresh process give identical parameters (tested).
Chapter 8 derives the optimizer pieces used here.

**Mixed precision.** With ``cfg.precision = "bf16"`` the forward pass and the loss run
under :func:`autocast` (``torch.autocast`` with ``dtype=torch.bfloat16``): matrix products
take bfloat16 inputs (8 bits of mantissa instead of 23) and accumulate in float32, while
the master weights, their gradients and AdamW's moments stay float32. ``"auto"`` picks
bf16 where the hardware computes it natively (:func:`resolve_precision`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn

from llmbook._validate import (
    check_bool,
    check_choice,
    check_id_array,
    check_int,
    check_number,
    check_type,
    is_number,
    show,
)
from llmbook.data import get_batch
from llmbook.optim import AdamW, warmup_cosine

CHECKPOINT_FORMAT = "llmbook-checkpoint 1"
#: The keys every checkpoint of :func:`save_checkpoint` holds.
_CHECKPOINT_KEYS: tuple[str, ...] = (
    "step",
    "model",
    "optimizer",
    "history",
    "train_config",
    "model_config",
    "generator_state",
    "torch_rng_state",
    "cuda_rng_states",
)
#: TrainConfig fields that may change when a run is resumed (the rest shape the trajectory).
RESUMABLE_CHANGES: tuple[str, ...] = ("max_steps", "eval_interval", "eval_batches", "log_interval")
#: Values of ``TrainConfig.precision``: float32 throughout, bfloat16 autocast, or bf16 where
#: the hardware has it natively (:func:`resolve_precision`).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    r"""The settings of :func:`train` (Chapter 7).

    Attributes:
        max_steps: :math:`S`, the number of optimizer steps.
        batch_size: windows per micro-batch, :math:`B`.
        block_size: tokens per window, :math:`T` (at most the model's context length).
        lr: the peak learning rate :math:`\eta_{\max}`, reached at the end of warmup.
        min_lr: :math:`\eta_{\min}`, where the cosine ends (GPT-3: 10% of the peak).
        warmup_steps: :math:`W`, steps of linear warmup (``0 <= W <= S``).
        weight_decay: AdamW's decoupled decay :math:`\lambda`, on matrices only.
        betas: AdamW's :math:`(\beta_1, \beta_2)`; GPT-3 used (0.9, 0.95).
        eps: AdamW's :math:`\epsilon`.
        grad_clip: clip the gradient's global L2 norm to this value; ``None`` = no clipping.
        grad_accum_steps: :math:`k`, micro-batches per step; one step sees
            :math:`k B T` tokens.
        eval_interval: evaluate every this many steps (and at step 0 and at the end).
        eval_batches: micro-batches averaged per evaluation.
        seed: seeds the batch generator (the model's initialisation is the caller's).
        log_interval: refresh the progress bar's loss every this many steps.
        precision: ``"fp32"``, ``"bf16"`` (forward and loss under bfloat16 :func:`autocast`;
            weights and optimizer stay float32) or ``"auto"`` (bf16 where the hardware
            has it natively, see :func:`resolve_precision`).
    """

    max_steps: int = 1000
    batch_size: int = 16
    block_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    grad_accum_steps: int = 1
    eval_interval: int = 100
    eval_batches: int = 20
    seed: int = 0
    log_interval: int = 10
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # numbers are stored as plain Python ints and floats (a NumPy scalar is accepted)
        for name in ("max_steps", "batch_size", "block_size", "grad_accum_steps"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        for name in ("eval_interval", "eval_batches", "log_interval"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        self.warmup_steps = check_int("warmup_steps", self.warmup_steps, 0)
        self.seed = check_int("seed", self.seed, 0)
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps must be <= max_steps={self.max_steps}, got {self.warmup_steps}"
            )
        self.lr = check_number("lr", self.lr, low=0.0, strict=True)
        self.min_lr = check_number("min_lr", self.min_lr, low=0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr={self.lr}, got {self.min_lr}")
        self.weight_decay = check_number("weight_decay", self.weight_decay, low=0.0)
        self.eps = check_number("eps", self.eps, low=0.0, strict=True)
        if self.grad_clip is not None:
            self.grad_clip = check_number("grad_clip", self.grad_clip, low=0.0, strict=True)
        betas = self.betas
        if not (
            isinstance(betas, tuple | list)
            and len(betas) == 2
            and all(is_number(b) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        _check_precision(self.precision)

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step, ``grad_accum_steps * batch_size * block_size``."""
        return self.grad_accum_steps * self.batch_size * self.block_size


# ------------------------------------------------------------------------ precision
def _check_precision(precision: object, name: str = "precision") -> None:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {PRECISIONS}, got {precision!r}")


def _device_type(device: object) -> str:
    try:
        return torch.device(device).type  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch.device or a device name like 'cpu' or 'cuda', got {device!r}"
        ) from None


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux; elsewhere False)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a run uses on ``device``: ``"fp32"`` or ``"bf16"`` (Chapter 7).

    ``"fp32"`` and ``"bf16"`` are returned as given; ``"auto"`` becomes ``"bf16"`` on a CUDA
    GPU that supports bfloat16 (``torch.cuda.is_bf16_supported()``) and on a CPU with
    native bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``), and ``"fp32"``
    elsewhere, where emulated bfloat16 would be slower than float32. The environment
    variable ``LLMBOOK_PRECISION`` (``"fp32"`` or ``"bf16"``) overrides what ``"auto"``
    becomes, e.g. ``LLMBOOK_PRECISION=fp32`` to time a bf16-capable CPU as a CPU without it.
    """
    _check_precision(precision)
    kind = _device_type(device)
    if precision != "auto":
        return precision
    forced = os.environ.get("LLMBOOK_PRECISION", "")
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"LLMBOOK_PRECISION must be 'fp32' or 'bf16', got {forced!r}")
        return forced
    if kind == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager[object]:
    r"""The context for a forward pass and loss at ``precision`` on ``device`` (Chapter 7).

    ``"bf16"`` is ``torch.autocast(device.type, dtype=torch.bfloat16)``: inside it, matrix
    products cast their inputs to bfloat16 (relative rounding :math:`2^{-8}`, float32's
    exponent range, so no loss scaling is needed) and accumulate in float32, while
    reductions such as softmax and the cross-entropy stay float32. ``"fp32"`` is a no-op
    context; ``"auto"`` is first resolved with :func:`resolve_precision`. Wrap the forward
    pass and the loss only; ``backward`` and the optimizer step run outside, on the float32
    master weights::

        with autocast("bf16", "cpu"):
            _, loss = model(x, y)
        loss.backward()
    """
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(_device_type(device), dtype=torch.bfloat16)


# ------------------------------------------------------------------------- schedule
def lr_at(step: int, cfg: TrainConfig) -> float:
    r"""The learning rate of step ``step`` (counting from 0): linear warmup, then cosine
    decay, as in GPT-3 (Chapter 7).

    .. math::
        \eta_s = \begin{cases}
        \eta_{\max}\,\dfrac{s + 1}{W} & s < W, \\[4pt]
        \eta_{\min} + \tfrac12(\eta_{\max} - \eta_{\min})
        \Big(1 + \cos\big(\pi\,\tfrac{s - W}{S - W}\big)\Big) & W \le s < S, \\[4pt]
        \eta_{\min} & s \ge S,
        \end{cases}

    so the first step already moves (:math:`\eta_0 = \eta_{\max}/W`), the peak is
    :math:`\eta_W = \eta_{\max}`, and the curve reaches :math:`\eta_{\min}` at :math:`s = S`.

    **Warmup convention.** The factor :math:`(s+1)/W` counts the step being taken, so
    warmup ends one step early: :math:`\eta_{W-1} = \eta_W = \eta_{\max}` (the peak is held
    for two steps). Hugging Face's ``get_cosine_schedule_with_warmup`` (and
    ``get_cosine_with_min_lr_schedule_with_warmup`` for :math:`\eta_{\min} > 0`) uses
    :math:`\lambda(s) = s/W` instead, so its step 0 has learning rate 0; with the same
    :math:`W`, :math:`S` and floor, the two are exactly related (tested) by

    .. math::
        \eta_s = \eta_{\max}\,\lambda(s + 1) \quad (s < W), \qquad
        \eta_s = \eta_{\max}\,\lambda(s) \quad (W \le s < S);

    both reach :math:`\eta_{\min}` at :math:`s = S > W`. After :math:`S`, :math:`\eta_s`
    stays at :math:`\eta_{\min}` while their cosine (meant for :math:`[W, S]`) rises again.
    """
    step = check_int("step", step, 0)
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    return warmup_cosine(
        step,
        peak_lr=cfg.lr,
        min_lr=cfg.min_lr,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.max_steps,
        offset=1,
    )


# ------------------------------------------------------------------------ optimizer
def configure_optimizer(model: nn.Module, cfg: TrainConfig) -> AdamW:
    r"""The book's AdamW (:class:`llmbook.optim.AdamW`, bit-identical to
    ``torch.optim.AdamW(foreach=True)``) with weight decay on the matrices only, as in
    GPT-2 and nanoGPT (Chapter 7).

    Parameters with ``ndim >= 2`` (linear weights, the embedding tables) are decayed,
    :math:`\theta \leftarrow \theta - \eta\lambda\theta`; biases and norm gains (1-d) are
    not, since shrinking them toward zero has no regularising meaning. A tied matrix
    (:math:`W_U = E^\top`) is one parameter and is counted once. Group 0 is decayed,
    group 1 is not.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    if not params:
        raise ValueError("model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps)


# --------------------------------------------------------------------- one step
def accumulate_gradients(
    model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *, precision: str = "fp32"
) -> float:
    r"""Back-propagate the mean loss of ``k`` micro-batches and return it (Chapter 7).

    Each micro-batch's loss is divided by :math:`k` before ``backward``, so the gradients
    summed in ``.grad`` are those of :math:`\frac1k\sum_i L_i`: with equal-sized
    micro-batches (and no ignored targets), exactly the gradient of one batch :math:`k`
    times larger, at a :math:`k`-th of the activation memory. ``model(x, y)`` must return
    ``(logits, loss)``; ``.grad`` is added to, not reset. The forward pass and loss run
    under :func:`autocast` at ``precision``; ``backward`` runs outside it.
    """
    _check_precision(precision)
    check_type("model", model, nn.Module, "a torch.nn.Module")
    batches = _check_batches(batches)
    k = len(batches)
    total: Tensor | None = None
    for x, y in batches:
        with autocast(precision, x.device):
            out = model(x, y)
        loss = out[1] if isinstance(out, tuple | list) and len(out) == 2 else None
        if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.is_floating_point():
            raise ValueError(
                f"model(x, y) must return (logits, loss) with a scalar float loss, got {show(out)}"
            )
        loss = loss.float()
        (loss / k).backward()
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None
    return float(total) / k


def _check_batches(batches: object) -> list[tuple[Tensor, Tensor]]:
    if isinstance(batches, Tensor | str) or not isinstance(batches, Sequence) or not batches:
        raise ValueError(
            f"batches must be a non-empty list of (x, y) micro-batches, got {show(batches)}"
        )
    for i, b in enumerate(batches):
        pair = isinstance(b, tuple | list) and len(b) == 2
        if not (pair and all(isinstance(t, Tensor) for t in b)):
            hint = "; one (x, y) pair passed? Wrap it: [(x, y)]" if isinstance(b, Tensor) else ""
            raise ValueError(f"batches[{i}] must be an (x, y) pair of tensors, got {show(b)}{hint}")
    return list(batches)  # type: ignore[arg-type]


def _check_optimizer_of(model: object, optimizer: object) -> None:
    """``optimizer`` must hold exactly ``model``'s trainable parameters: an optimizer built
    for another model would step (or load state into) tensors the model does not use."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_type("optimizer", optimizer, torch.optim.Optimizer, "a torch.optim.Optimizer")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}  # type: ignore[union-attr]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}  # type: ignore[union-attr]
    if held != trainable:
        raise ValueError(
            f"optimizer must hold exactly the model's trainable parameters; it has "
            f"{len(held - trainable)} that are not the model's and lacks {len(trainable - held)}"
            f" of the model's (build it with configure_optimizer(model, cfg))"
        )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    lr: float,
    grad_clip: float | None = None,
    precision: str = "fp32",
) -> tuple[float, float]:
    r"""One optimizer step on ``batches`` (Chapter 7): set :math:`\eta`, zero the gradients,
    accumulate (:func:`accumulate_gradients`, forward and loss under :func:`autocast` at
    ``precision``), clip the global norm to ``grad_clip``
    (:math:`g \leftarrow g\min(1, c/\lVert g\rVert)`), step.

    Returns the mean loss and the gradient norm :math:`\lVert g\rVert_2` *before* clipping.
    Raises ``FloatingPointError`` if the loss is not finite (lower the learning rate).
    """
    lr = check_number("lr", lr, low=0.0)
    if grad_clip is not None:
        grad_clip = check_number("grad_clip", grad_clip, low=0.0, strict=True)
    _check_optimizer_of(model, optimizer)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, batches, precision=precision)
    if not math.isfinite(loss):
        raise FloatingPointError(f"the training loss is {loss}; try a smaller learning rate")
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip is not None:
        norm = nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = nn.utils.get_total_norm([p.grad for p in params])  # type: ignore[misc]
    optimizer.step()
    return loss, float(norm)


# ------------------------------------------------------------------------- history
@dataclass
class History:
    """What :func:`train` measured, as plain lists that plot directly (Chapter 7).

    ``steps[i]`` counts the optimizer steps done (1, 2, …); ``lrs``, ``train_losses``,
    ``grad_norms`` (before clipping), ``tokens_seen`` (cumulative) and ``elapsed``
    (cumulative seconds spent in training steps, evaluation and saving excluded) are
    aligned with it. ``val_losses[j]`` was measured after ``val_steps[j]`` steps (0 is
    the untrained model). ``precision`` is the precision the run used, ``"fp32"`` or
    ``"bf16"`` (``cfg.precision`` with ``"auto"`` resolved, :func:`resolve_precision`).
    """

    steps: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    tokens_seen: list[int] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "precision" and not isinstance(getattr(self, f.name), list):
                raise ValueError(f"{f.name} must be a list, got {show(getattr(self, f.name))}")
        check_choice("precision", self.precision, ("fp32", "bf16"))

    @property
    def tokens_per_second(self) -> float:
        """The training throughput, tokens trained on per second of training steps (0 if none)."""
        if not self.elapsed or self.elapsed[-1] <= 0:
            return 0.0
        return self.tokens_seen[-1] / self.elapsed[-1]

    @property
    def seconds_per_step(self) -> float:
        """Mean wall-clock seconds of one optimizer step (0 if none)."""
        return self.elapsed[-1] / len(self.elapsed) if self.elapsed else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The history as a dict of lists and the precision (what a checkpoint stores)."""
        return {k: v if isinstance(v, str) else list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Rebuild a history from :meth:`to_dict`; ``ValueError`` if fields are missing.

        ``precision`` may be absent (histories saved before it existed were fp32)."""
        names = [f.name for f in fields(cls)]
        lists = [n for n in names if n != "precision"]
        if not isinstance(d, dict) or not set(lists) <= set(d) <= set(names):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"d must be a History dict with the keys {names}, got {got}")
        precision = d.get("precision", "fp32")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"d's precision must be 'fp32' or 'bf16', got {precision!r}")
        bad = [k for k in lists if not isinstance(d[k], list | tuple)]
        if bad:
            raise ValueError(f"d must hold lists, but {bad[0]!r} is {show(d[bad[0]])}")
        return cls(**{k: list(d[k]) for k in lists}, precision=precision)


# ----------------------------------------------------------------------- evaluation
def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_tokens(name: str, data: object, block_size: int) -> np.ndarray:
    data = check_id_array(name, data)
    if len(data) < block_size + 1:
        raise ValueError(
            f"{name} has {len(data)} tokens; block_size={block_size} needs at least "
            f"{block_size + 1}"
        )
    return data


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: np.ndarray,
    cfg: TrainConfig,
    generator: torch.Generator | None = None,
) -> float:
    r"""Mean loss over ``cfg.eval_batches`` random batches of ``data`` (Chapter 7):
    :math:`\hat L = \frac1{n}\sum_{j=1}^{n} L(x^{(j)}, y^{(j)})`.

    Runs under ``torch.no_grad`` in eval mode (dropout off) and restores the model's mode,
    with the forward pass under :func:`autocast` at ``cfg.precision``. Without
    ``generator``, a fresh one seeded with ``cfg.seed`` is used, so every call scores the
    *same* batches and successive evaluations differ only by the model.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_tokens("data", data, cfg.block_size)
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    else:
        generator = torch.Generator().manual_seed(cfg.seed)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        total = torch.zeros((), dtype=torch.float64, device=device)
        for _ in range(cfg.eval_batches):
            x, y = get_batch(
                data, cfg.batch_size, cfg.block_size, generator=generator, device=device
            )
            with autocast(cfg.precision, device):
                loss = model(x, y)[1]
            total += loss.double()
    finally:
        model.train(was_training)
    return float(total) / cfg.eval_batches


# ---------------------------------------------------------------------- checkpoints
def _model_config(model: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(model, "config", None)
    return asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else None


def _binary_file(obj: object, method: str, name: str) -> bool:
    """True for an open binary file (with ``method``), False for a path, else ``ValueError``."""
    if isinstance(obj, str | os.PathLike):
        return False
    if isinstance(obj, io.TextIOBase) or not hasattr(obj, method):
        raise ValueError(f"{name} must be a path or a binary file ('rb'/'wb'), got {show(obj)}")
    return True


def save_checkpoint(
    path: str | Path | IO[bytes],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    history: History | None,
    cfg: TrainConfig | None,
    generator: torch.Generator | None,
    *,
    with_history: bool = True,
    with_config: bool = True,
) -> Path | IO[bytes]:
    """Write a training checkpoint with ``torch.save``, atomically (Chapter 7).

    It holds plain data only (so :func:`load_checkpoint` can use ``weights_only=True``):
    the model's and optimizer's state dicts, ``step``, the history and the train config
    as dicts, the model's config (``dataclasses.asdict`` of ``model.config``), the batch
    generator's state and torch's CPU (and CUDA) random states. The file is written to a
    temporary name and renamed, so an interrupted save never leaves half a checkpoint.
    ``optimizer`` and ``generator`` may be ``None`` for a weights-only checkpoint.

    ``path`` may also be an open binary file (``io.BytesIO``, ``open(..., "wb")``): the
    checkpoint is written at its position, in place, and the file is returned (the path
    otherwise).
    ``with_history=False`` and ``with_config=False`` leave out the history and the train
    config (stored as ``None``; ``history`` and ``cfg`` may then be ``None``): such a
    checkpoint loads into a model but cannot resume training. The model's config is
    always kept, since loading checks it.
    """
    with_history = check_bool("with_history", with_history)
    with_config = check_bool("with_config", with_config)
    step = check_int("step", step, 0)
    check_type("model", model, nn.Module, "a torch.nn.Module")
    if optimizer is not None:
        _check_optimizer_of(model, optimizer)
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    if with_history and not isinstance(history, History):
        raise ValueError(
            f"history must be a History (or pass with_history=False), got {type(history).__name__}"
        )
    if with_config and not isinstance(cfg, TrainConfig):
        raise ValueError(
            f"cfg must be a TrainConfig (or pass with_config=False), got {type(cfg).__name__}"
        )
    to_file = _binary_file(path, "write", "path")
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "history": history.to_dict() if with_history else None,  # type: ignore[union-attr]
        "train_config": asdict(cfg) if with_config else None,  # type: ignore[call-overload]
        "model_config": _model_config(model),
        "generator_state": None if generator is None else generator.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_states": cuda_states,
    }
    if to_file:
        torch.save(state, path)  # type: ignore[arg-type]
        return path  # type: ignore[return-value]
    path = Path(path)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: str | Path | IO[bytes],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load a checkpoint of :func:`save_checkpoint` into ``model`` (and ``optimizer``)
    (Chapter 7) and return its contents, with ``"history"`` as a :class:`History`.

    Reads with ``torch.load(..., weights_only=True)`` (no arbitrary code runs), from a
    path or an open binary file (``io.BytesIO``, ``open(..., "rb")``; read from its
    position). Raises ``ValueError`` naming the path when the file is missing or
    unreadable, and before touching the model when it was saved from another model config
    or parameter shapes. A checkpoint saved without history or train config returns
    ``None`` for ``"history"`` or ``"train_config"``.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    if optimizer is not None:
        _check_optimizer_of(model, optimizer)
    source = path
    if _binary_file(path, "read", "path"):  # messages name the file, if it has a name
        path = Path(str(getattr(path, "name", "") or f"<{type(path).__name__}>"))
    else:
        source = path = Path(path)  # type: ignore[arg-type]
        if not path.is_file():
            raise ValueError(f"checkpoint path {str(path)!r} is not a file")
    try:
        ckpt = torch.load(source, map_location="cpu", weights_only=True)  # type: ignore[arg-type]
    except Exception as err:  # torch raises many kinds on a damaged file
        raise ValueError(f"checkpoint {str(path)!r} is not readable: {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an llmbook checkpoint ({CHECKPOINT_FORMAT!r})")
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} is incomplete: it lacks the keys {missing}")
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["model_config"], dict | None):
        raise ValueError(f"checkpoint {str(path)!r} is damaged: 'model' must be a state dict")
    try:
        history = None if ckpt["history"] is None else History.from_dict(ckpt["history"])
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r} has a damaged history: {err}") from None
    ours, theirs = _model_config(model), ckpt["model_config"]
    if ours is not None and theirs is not None and ours != theirs:
        keys = sorted(ours.keys() | theirs.keys())
        diff = {k: (theirs.get(k), ours.get(k)) for k in keys if ours.get(k) != theirs.get(k)}
        raise ValueError(
            f"checkpoint {str(path)!r} is for another model config; (saved, this model): {diff}"
        )
    own, saved = model.state_dict(), ckpt["model"]
    if set(own) != set(saved):
        raise ValueError(
            f"checkpoint {str(path)!r} has other parameters: missing "
            f"{sorted(set(own) - set(saved))}, unexpected {sorted(set(saved) - set(own))}"
        )
    for k, v in saved.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"checkpoint {str(path)!r}: {k} has shape {tuple(v.shape)}, the model's is "
                f"{tuple(own[k].shape)}"
            )
    if optimizer is not None and ckpt["optimizer"] is None:
        raise ValueError(f"checkpoint {str(path)!r} holds no optimizer state")
    model.load_state_dict(saved)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ValueError(
                f"checkpoint {str(path)!r}: its optimizer state does not fit optimizer: {err}"
            ) from None
    ckpt["history"] = history
    return ckpt


def _restore_random_state(ckpt: dict[str, Any], generator: torch.Generator) -> None:
    if ckpt["generator_state"] is None:
        raise ValueError("the checkpoint holds no batch-generator state; it cannot be resumed")
    generator.set_state(ckpt["generator_state"])
    torch.set_rng_state(ckpt["torch_rng_state"])
    if ckpt["cuda_rng_states"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng_states"])


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    try:
        saved_cfg = asdict(TrainConfig(**saved))
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has a damaged train_config: {err}") from None
    diff = [k for k, v in asdict(cfg).items() if v != saved_cfg[k] and k not in RESUMABLE_CHANGES]
    if diff:
        pairs = {k: (saved_cfg[k], getattr(cfg, k)) for k in diff}
        raise ValueError(
            f"cannot resume {str(path)!r} with a different cfg (saved, given): {pairs}; "
            f"only {RESUMABLE_CHANGES} may change"
        )


# ---------------------------------------------------------------------------- train
def _tqdm() -> Any:
    """tqdm.auto's bar (a widget in Jupyter) when ipywidgets is installed, else the text bar.

    Without ipywidgets, ``tqdm.auto`` falls back to the text bar but warns on stderr, which
    would break the notebooks' output comparison; choosing here avoids the warning.
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm


def train(
    model: nn.Module,
    train_data: np.ndarray,
    val_data: np.ndarray | None,
    cfg: TrainConfig,
    *,
    device: torch.device | str | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, History], bool | None] | None = None,
) -> History:
    r"""Train ``model`` on next-token prediction over ``train_data`` (Chapter 7).

    ``model(x, y)`` must return ``(logits, loss)`` (:class:`llmbook.gpt.GPT` does). Each
    step is :func:`train_step` with :func:`lr_at`'s learning rate on
    ``cfg.grad_accum_steps`` micro-batches from :func:`llmbook.data.get_batch`; the
    batches come from a ``torch.Generator`` seeded with ``cfg.seed``. Every
    ``cfg.eval_interval`` steps, at step 0 and at ``cfg.max_steps``, :func:`evaluate` scores
    ``val_data`` (``None``: no evaluation) and, given ``checkpoint_path``, a checkpoint is
    saved; one is saved at the end too. Training steps and evaluations run at
    ``cfg.precision``, with ``"auto"`` resolved for the device once
    (:func:`resolve_precision`) and recorded in ``History.precision``.

    Args:
        device: where to train; ``None`` keeps the model where it is.
        checkpoint_path: where :func:`save_checkpoint` writes.
        resume: continue from ``checkpoint_path`` (which must exist): weights, optimizer,
            step, history and random states are restored, so the run continues exactly.
            The configs must agree except in :data:`RESUMABLE_CHANGES`.
        progress: show a tqdm bar (``TQDM_DISABLE=1`` in the environment also hides it).
        callback: called as ``callback(step, history)`` after each step (``step`` = steps
            done); returning ``True`` stops training after saving a checkpoint (no extra
            evaluation), e.g. to split a run in two.

    Returns:
        The :class:`History` of the whole run (including the resumed part).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    context = getattr(getattr(model, "config", None), "block_size", None)
    if isinstance(context, int) and cfg.block_size > context:
        raise ValueError(
            f"cfg.block_size={cfg.block_size} exceeds the model's context length {context}"
        )
    _check_tokens("train_data", train_data, cfg.block_size)
    if val_data is not None:
        _check_tokens("val_data", val_data, cfg.block_size)
    resume, progress = check_bool("resume", resume), check_bool("progress", progress)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {show(callback)}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path to resume from")
    path = None if checkpoint_path is None else Path(checkpoint_path)
    if device is not None:
        model.to(device)
    device = _device_of(model)

    optimizer = configure_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    precision = resolve_precision(cfg.precision, device)
    history, step = History(precision=precision), 0
    if resume:
        assert path is not None
        ckpt = load_checkpoint(path, model, optimizer)
        if ckpt["history"] is None or ckpt["train_config"] is None:
            raise ValueError(
                f"checkpoint {str(path)!r} was saved without its history or train config"
                " (with_history/with_config=False); it cannot resume training"
            )
        _check_resumable(ckpt["train_config"], cfg, path)
        _restore_random_state(ckpt, generator)
        history, step = ckpt["history"], ckpt["step"]
        history.precision = precision

    def save() -> None:
        if path is not None:
            save_checkpoint(path, model, optimizer, step, history, cfg, generator)

    def validate() -> None:
        if val_data is not None:
            history.val_steps.append(step)
            history.val_losses.append(
                evaluate(model, val_data, dataclasses.replace(cfg, precision=precision))
            )

    model.train()
    if step == 0 and not history.val_steps:
        validate()
    # TQDM_DISABLE is honoured here: tqdm's notebook widget ignores it and would store a
    # widget in the notebook; an explicit disable=False would override it in the text bar
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    hide = {"disable": True} if quiet or not progress else {}
    bar = _tqdm()(total=cfg.max_steps, initial=step, desc="training", unit="step", **hide)
    try:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            batches = [
                get_batch(
                    train_data, cfg.batch_size, cfg.block_size, generator=generator, device=device
                )
                for _ in range(cfg.grad_accum_steps)
            ]
            lr = lr_at(step, cfg)
            loss, norm = train_step(
                model, optimizer, batches, lr=lr, grad_clip=cfg.grad_clip, precision=precision
            )
            step += 1
            dt = time.perf_counter() - t0
            history.steps.append(step)
            history.lrs.append(lr)
            history.train_losses.append(loss)
            history.grad_norms.append(norm)
            history.tokens_seen.append(
                (history.tokens_seen[-1] if history.tokens_seen else 0) + cfg.tokens_per_step
            )
            history.elapsed.append((history.elapsed[-1] if history.elapsed else 0.0) + dt)
            bar.update(1)
            evaluated = step % cfg.eval_interval == 0 or step == cfg.max_steps
            if evaluated:
                validate()
            if step % cfg.log_interval == 0 or step == cfg.max_steps:
                shown = {"loss": f"{loss:.3f}"}
                if history.val_losses:
                    shown["val"] = f"{history.val_losses[-1]:.3f}"
                bar.set_postfix(shown, refresh=False)
            if callback is not None and callback(step, history):
                break  # saved below
            if evaluated and step < cfg.max_steps:
                save()
    finally:
        bar.close()
    save()
    return history


__all__ = [
    "CHECKPOINT_FORMAT",
    "PRECISIONS",
    "RESUMABLE_CHANGES",
    "History",
    "TrainConfig",
    "accumulate_gradients",
    "autocast",
    "configure_optimizer",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "resolve_precision",
    "save_checkpoint",
    "train",
    "train_step",
]
