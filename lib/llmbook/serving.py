r"""Serving a language model: the roofline, step costs and batching policies (Chapter 13).

Two parts.

**What one step costs.** :func:`matmul_flops_per_s` and :func:`memory_bandwidth` measure
the two ceilings of this machine; :func:`step_cost` counts the FLOPs and bytes of one
forward step of a :class:`~llmbook.gpt.GPTConfig` (with :mod:`llmbook.counting`), and
their ratio, the **arithmetic intensity** :math:`I` in FLOPs per byte, places the step
under the roofline (Williams et al. 2009)

.. math::
    \text{attainable FLOP/s} = \min(\pi,\; I\,\beta),

with :math:`\pi` the peak compute rate and :math:`\beta` the memory bandwidth
(:func:`roofline`). Prefill runs many tokens per weight read (compute-bound); decoding
runs one token per sequence per weight read (memory-bound unless the batch is large).

**What a policy does with it.** :func:`simulate` is a discrete-event simulator of a server
on a request :class:`Trace` (arrival times, prompt and output lengths) under a
:class:`CostModel` of per-step times fitted to measurements (:func:`measure_step_costs`,
:func:`fit_cost_model`): *static* batching runs a batch to its end before it takes new
requests; *continuous* (iteration-level) batching, as in Orca (Yu et al. 2022) and vLLM,
admits waiting requests after every step and lets finished ones leave. It reports
throughput, time to first token (TTFT), time per output token (TPOT) and their
percentiles, and is deterministic given the trace and the cost model.

Every measurement takes a ``clock``: the wall clock by default, or ``time.thread_time``,
the CPU time of the calling thread, which other programs on a shared machine do not
inflate (meaningful when torch runs on one thread, ``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from llmbook._validate import (
    check_bool,
    check_choice,
    check_float_dtype,
    check_int,
    check_number,
    check_type,
    show,
)
from llmbook.attention import KVCache
from llmbook.counting import count_parameters, kv_cache_bytes
from llmbook.gpt import GPT, GPTConfig

#: The batching policies of :func:`simulate`.
POLICIES: tuple[str, ...] = ("static", "continuous")


# ------------------------------------------------------------------- the two ceilings
def _check_clock(clock: object) -> Callable[[], float]:
    """``clock`` if it is callable (``time.perf_counter``, ``time.thread_time``, ...)."""
    if not callable(clock):
        raise ValueError(f"clock must be a callable returning seconds, got {show(clock)}")
    return clock


def matmul_flops_per_s(
    n: int = 1024,
    *,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    r"""The rate of an :math:`n\times n` by :math:`n\times n` matrix product on the CPU,
    :math:`2n^3` FLOPs over the best of ``repeats`` timings by ``clock`` (after one
    warm-up), in FLOP/s.
    """
    n = check_int("n", n, 1)
    dtype = check_float_dtype("dtype", dtype)
    repeats = check_int("repeats", repeats, 1)
    clock = _check_clock(clock)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, a, out=out)  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        torch.mm(a, a, out=out)
        best = min(best, clock() - start)
    return 2 * n**3 / best


def memory_bandwidth(
    n_bytes: int = 2**26, *, repeats: int = 5, clock: Callable[[], float] = time.perf_counter
) -> float:
    r"""Memory bandwidth in bytes/s: a copy of ``n_bytes`` reads and writes them, so it
    moves :math:`2n` bytes; best of ``repeats`` timings by ``clock`` after one warm-up.
    Use a size well above the processor's caches (the default, 64 MiB, is)."""
    n_bytes = check_int("n_bytes", n_bytes, 4)
    repeats = check_int("repeats", repeats, 1)
    clock = _check_clock(clock)
    src = torch.ones(n_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm up (and touch every page)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        dst.copy_(src)
        best = min(best, clock() - start)
    return 2 * src.numel() * 4 / best


def roofline(
    intensity: float | np.ndarray, peak_flops: float, bandwidth: float
) -> float | np.ndarray:
    r"""Attainable FLOP/s at arithmetic intensity :math:`I`: :math:`\min(\pi, I\beta)`.

    Below the ridge point :math:`I^* = \pi/\beta` a kernel is memory-bound, above it
    compute-bound (Williams et al. 2009; Chapter 13)."""
    peak = check_number("peak_flops", peak_flops, low=0, strict=True)
    beta = check_number("bandwidth", bandwidth, low=0, strict=True)
    arr = np.asarray(intensity, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"intensity must hold finite numbers >= 0, got {show(intensity)}")
    out = np.minimum(peak, arr * beta)
    return float(out) if out.ndim == 0 else out


def step_cost(
    cfg: GPTConfig,
    *,
    batch: int,
    new_tokens: int,
    context: int = 0,
    bytes_per_value: int = 4,
) -> dict[str, float]:
    r"""FLOPs, bytes moved and arithmetic intensity of one forward step (Chapter 13).

    ``batch`` sequences each run ``new_tokens`` tokens after ``context`` cached ones.
    With :math:`N_w` the weights every token multiplies (the non-embedding parameters
    plus the output head, :math:`d_{\text{model}} V`), :math:`n` = ``new_tokens`` and
    :math:`c` = ``context``, in the convention of
    :func:`llmbook.counting.flops_per_token`:

    .. math::
        \begin{aligned}
        \text{FLOPs} &= B\,\big(2 N_w n + 2 L d_{\text{model}}\,((c + n)^2 - c^2)\big), \\
        \text{bytes} &= b\,N_w + B\cdot\text{KV bytes}(c + n),
        \end{aligned}

    so a prefill of :math:`T` tokens is :math:`B\,T` times ``flops_per_token(cfg, T,
    include_head=True)``, and a decoding step (:math:`n = 1`) costs
    :math:`2N_w + 4Ld_{\text{model}}c` per sequence. The bytes are one read of the
    weights plus the cache read and written (:func:`llmbook.counting.kv_cache_bytes`);
    activations are left out. ``bytes_per_value`` :math:`b` is 4 for float32, 2 for 16-bit.
    """
    cfg = check_type("cfg", cfg, GPTConfig, "a GPTConfig")
    B = check_int("batch", batch, 1)
    n = check_int("new_tokens", new_tokens, 1)
    c = check_int("context", context, 0)
    b = check_int("bytes_per_value", bytes_per_value, 1)
    n_w = count_parameters(cfg, non_embedding=True) + cfg.d_model * cfg.vocab_size
    attention = 2 * cfg.n_layer * cfg.d_model * ((c + n) ** 2 - c**2)
    flops = B * (2 * n_w * n + attention)
    moved = b * n_w + kv_cache_bytes(cfg, B, c + n, b)
    return {"flops": float(flops), "bytes": float(moved), "intensity": flops / moved}


# ------------------------------------------------------------------ measured step costs
def _check_model(model: object) -> GPT:
    return check_type("model", model, GPT, "an llmbook.gpt.GPT")


@torch.no_grad()
def decode_step_seconds(
    model: GPT,
    prompt: Tensor,
    n_new: int,
    *,
    use_cache: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> np.ndarray:
    r"""Seconds (by ``clock``) of each of ``n_new`` greedy decoding steps after ``prompt``
    ``(1, T)``.

    With the cache a step runs one position against the stored keys and values; without
    it, step :math:`t` recomputes all :math:`t` positions (Chapter 13). The sequence must
    fit the context: :math:`T + n_{\text{new}} - 1 \le` ``block_size``.
    """
    model = _check_model(model)
    n_new = check_int("n_new", n_new, 1)
    use_cache = check_bool("use_cache", use_cache)
    clock = _check_clock(clock)
    prompt = model._check_idx(prompt, "prompt")
    if prompt.shape[0] != 1 or prompt.shape[1] + n_new - 1 > model.config.block_size:
        raise ValueError(
            f"prompt must have shape (1, T) with T + n_new - 1 <= block_size="
            f"{model.config.block_size}, got {tuple(prompt.shape)} and n_new={n_new}"
        )
    caches = [KVCache(model.config.block_size) for _ in model.blocks] if use_cache else None
    idx, step_in = prompt, prompt
    seconds = np.empty(n_new)
    for i in range(n_new):
        start = clock()
        logits = model._logits(step_in, caches, last_only=True)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        seconds[i] = clock() - start
        idx = torch.cat((idx, nxt), dim=1)
        step_in = nxt if caches is not None else idx
    return seconds


@torch.no_grad()
def measure_step_costs(
    model: GPT,
    *,
    prefill_shapes: list[tuple[int, int]],
    decode_batches: list[int],
    context: int,
    repeats: int = 3,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, np.ndarray]:
    r"""Time the two kinds of step of a server on ``model`` (Chapter 13).

    * prefill: a forward pass over ``(B, T)`` random tokens with empty caches, for each
      ``(B, T)`` in ``prefill_shapes``; returned against the tokens :math:`BT`;
    * decode: one step of ``B`` sequences, each with ``context`` cached positions, for
      each ``B`` in ``decode_batches``.

    Each time is the best of ``repeats`` by ``clock``. Returns ``prefill_tokens``,
    ``prefill_seconds``, ``decode_batch`` and ``decode_seconds``.
    """
    model = _check_model(model)
    T_max = model.config.block_size
    if not isinstance(prefill_shapes, list | tuple) or not prefill_shapes:
        raise ValueError(
            f"prefill_shapes must be a non-empty list of (B, T), got {show(prefill_shapes)}"
        )
    for shape in prefill_shapes:
        if not isinstance(shape, tuple | list) or len(shape) != 2:
            raise ValueError(f"prefill_shapes must hold pairs (B, T), got {show(shape)}")
        check_int("prefill_shapes B", shape[0], 1)
        check_int("prefill_shapes T", shape[1], 1, T_max)
    if not isinstance(decode_batches, list | tuple) or not decode_batches:
        raise ValueError(f"decode_batches must be a non-empty list, got {show(decode_batches)}")
    for B in decode_batches:
        check_int("decode_batches", B, 1)
    repeats = check_int("repeats", repeats, 1)
    clock = _check_clock(clock)
    context = check_int("context", context, 1, T_max - repeats)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    device = next(model.parameters()).device
    V = model.config.vocab_size

    def ids(B: int, T: int) -> Tensor:
        return torch.randint(0, V, (B, T), generator=g).to(device)

    prefill = []
    for B, T in prefill_shapes:
        x = ids(B, T)
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            start = clock()
            model._logits(x, [KVCache(T_max) for _ in model.blocks], last_only=True)
            best = min(best, clock() - start)
        prefill.append(best)
    decode = []
    for B in decode_batches:
        caches = [KVCache(T_max) for _ in model.blocks]
        model._logits(ids(B, context), caches, last_only=True)
        best = float("inf")
        for _ in range(repeats):
            x = ids(B, 1)
            start = clock()
            model._logits(x, caches, last_only=True)
            best = min(best, clock() - start)
        decode.append(best)
    return {
        "prefill_tokens": np.array([B * T for B, T in prefill_shapes]),
        "prefill_seconds": np.array(prefill),
        "decode_batch": np.array(list(decode_batches)),
        "decode_seconds": np.array(decode),
    }


@dataclass(frozen=True)
class CostModel:
    r"""Per-step times of a server (Chapter 13), in seconds:

    .. math::
        t_{\text{prefill}}(n) = a_p + c_p\,n, \qquad t_{\text{decode}}(B) = a_d + c_d\,B,

    for a prefill of :math:`n` tokens in all and a decoding step of :math:`B` sequences
    (one token each). The growth of a decoding step with the context is left out.
    """

    prefill_base: float
    prefill_per_token: float
    decode_base: float
    decode_per_seq: float

    def __post_init__(self) -> None:
        for name in ("prefill_base", "prefill_per_token", "decode_base", "decode_per_seq"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), low=0))
        if (
            self.prefill_base + self.prefill_per_token <= 0
            or self.decode_base + self.decode_per_seq <= 0
        ):
            raise ValueError(
                "prefill_base + prefill_per_token and decode_base + decode_per_seq must be > 0"
            )

    def prefill_time(self, n_tokens: int) -> float:
        """Seconds to prefill ``n_tokens`` prompt tokens (in one step)."""
        n = check_int("n_tokens", n_tokens, 1)
        return self.prefill_base + self.prefill_per_token * n

    def decode_time(self, batch: int) -> float:
        """Seconds of one decoding step of ``batch`` sequences."""
        B = check_int("batch", batch, 1)
        return self.decode_base + self.decode_per_seq * B


def _line(name: str, x: object, y: object) -> tuple[float, float]:
    """Least-squares intercept and slope of y on x, both constrained to be >= 0."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.ndim != 1 or xa.shape != ya.shape or len(xa) < 2 or len(np.unique(xa)) < 2:
        raise ValueError(f"{name} needs two 1-d arrays of the same length with >= 2 distinct x")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya)) and np.all(ya > 0)):
        raise ValueError(f"{name} times must be finite and > 0")
    slope, intercept = np.polyfit(xa, ya, 1)
    if slope < 0:  # the best line with slope 0
        return float(ya.mean()), 0.0
    if intercept < 0:  # the best line through the origin
        return 0.0, float(xa @ ya / (xa @ xa))
    return float(intercept), float(slope)


def fit_cost_model(
    prefill_tokens: np.ndarray,
    prefill_seconds: np.ndarray,
    decode_batch: np.ndarray,
    decode_seconds: np.ndarray,
) -> CostModel:
    """Fit :class:`CostModel`'s two lines to measured step times by least squares
    (constrained to coefficients >= 0). Takes the output of :func:`measure_step_costs`."""
    a, b = _line("prefill", prefill_tokens, prefill_seconds)
    c, e = _line("decode", decode_batch, decode_seconds)
    return CostModel(a, b, c, e)


# --------------------------------------------------------------------------- traces
@dataclass
class Trace:
    """Requests to a server: ``arrival`` times (seconds, non-decreasing), ``prompt_len``
    and ``output_len`` in tokens (each >= 1; the first output token comes from the
    prefill). All three are 1-d arrays of one length (Chapter 13)."""

    arrival: np.ndarray
    prompt_len: np.ndarray
    output_len: np.ndarray

    def __post_init__(self) -> None:
        self.arrival = np.asarray(self.arrival, dtype=float)
        if self.arrival.ndim != 1 or len(self.arrival) == 0:
            raise ValueError(f"arrival must be a non-empty 1-d array, got {show(self.arrival)}")
        if not np.all(np.isfinite(self.arrival)) or np.any(np.diff(self.arrival) < 0):
            raise ValueError("arrival must hold finite, non-decreasing times")
        for name in ("prompt_len", "output_len"):
            raw = np.asarray(getattr(self, name))
            ok = raw.shape == self.arrival.shape and np.issubdtype(raw.dtype, np.integer)
            if not ok or np.any(raw < 1):
                raise ValueError(
                    f"{name} must be integers >= 1, one per arrival ({len(self.arrival)}), "
                    f"got {show(getattr(self, name))}"
                )
            setattr(self, name, raw.astype(np.int64))

    def __len__(self) -> int:
        return len(self.arrival)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    r"""``n`` arrival times of a Poisson process of ``rate`` requests per second: the
    cumulative sum of exponential gaps of mean :math:`1/\lambda`, the first at time 0."""
    n = check_int("n", n, 1)
    rate = check_number("rate", rate, low=0, strict=True)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    gaps = rng.exponential(1 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


# ------------------------------------------------------------------------ simulator
def percentiles(x: np.ndarray, qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": …, "p90": …, "p99": …}``: NumPy's linear-interpolation percentiles of
    the finite values of ``x``."""
    arr = np.asarray(x, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"x must hold at least one finite value, got {show(x)}")
    for q in qs:
        check_number("qs", q, low=0, high=100)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


@dataclass
class ServingResult:
    """Per-request times of a simulated server (seconds; see :func:`simulate`)."""

    policy: str
    trace: Trace
    first_token: np.ndarray
    finish: np.ndarray
    n_steps: int = 0
    busy: float = field(default=0.0)

    def __post_init__(self) -> None:
        check_choice("policy", self.policy, POLICIES)
        check_type("trace", self.trace, Trace, "a Trace")
        for name in ("first_token", "finish"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != self.trace.arrival.shape:
                raise ValueError(
                    f"{name} must hold one time per request ({len(self.trace)}), "
                    f"got {show(getattr(self, name))}"
                )
            setattr(self, name, value)

    @property
    def ttft(self) -> np.ndarray:
        """Time to first token, the first token's time minus the arrival (queueing + prefill)."""
        return self.first_token - self.trace.arrival

    @property
    def tpot(self) -> np.ndarray:
        r"""Time per output token after the first, in seconds; NaN for one-token answers.

        It is :math:`(t_{\text{finish}} - t_{\text{first}})/(n_{\text{out}} - 1)`.
        """
        n = self.trace.output_len - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (self.finish - self.first_token) / np.maximum(n, 1), np.nan)

    @property
    def latency(self) -> np.ndarray:
        """End-to-end latency, the last token's time minus the arrival."""
        return self.finish - self.trace.arrival

    @property
    def throughput(self) -> float:
        """Output tokens per second from the first arrival to the last token."""
        span = float(self.finish.max() - self.trace.arrival.min())
        return float(self.trace.output_len.sum()) / span

    def summary(self) -> dict[str, float]:
        """Throughput and the p50/p90/p99 of TTFT, TPOT and latency, in one flat dict."""
        out = {"throughput": self.throughput}
        for name in ("ttft", "tpot", "latency"):
            for p, v in percentiles(getattr(self, name)).items():
                out[f"{name}_{p}"] = v
        return out


def simulate(trace: Trace, cost: CostModel, *, policy: str, max_batch: int) -> ServingResult:
    r"""Serve ``trace`` with one model replica under ``policy`` (Chapter 13).

    * ``"static"``: when the server is idle it takes up to ``max_batch`` waiting
      requests, prefills them padded to the longest prompt (:math:`B\,T_{\max}` tokens),
      then runs decoding steps of the whole batch until its longest answer is done;
      requests that arrive meanwhile wait.
    * ``"continuous"``: before every step it admits waiting requests into free slots
      (at most ``max_batch`` running); a step is either the prefill of the newly
      admitted prompts (no padding) or one decoding step of every running request;
      a request leaves the batch as soon as its last token is out.

    Every request's first token comes out of its prefill; each decoding step gives each
    running request one more token. Time advances by the :class:`CostModel`; nothing is
    random, so the result is a function of the trace and the cost model.
    """
    check_type("trace", trace, Trace, "a Trace")
    check_type("cost", cost, CostModel, "a CostModel")
    policy = check_choice("policy", policy, POLICIES)
    max_batch = check_int("max_batch", max_batch, 1)
    n = len(trace)
    arrival, prompt, out = trace.arrival, trace.prompt_len, trace.output_len
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    waiting: deque[int] = deque()
    now, nxt, done, steps, busy = 0.0, 0, 0, 0, 0.0

    def admit() -> int:
        i = nxt
        while i < n and arrival[i] <= now:
            waiting.append(i)
            i += 1
        return i

    if policy == "static":
        while done < n:
            if not waiting and nxt < n:
                now = max(now, float(arrival[nxt]))
            nxt = admit()
            batch = [waiting.popleft() for _ in range(min(max_batch, len(waiting)))]
            dt = cost.prefill_time(len(batch) * int(prompt[batch].max()))
            now, busy, steps = now + dt, busy + dt, steps + 1
            first[batch] = now
            step = cost.decode_time(len(batch))
            finish[batch] = now + (out[batch] - 1) * step
            n_dec = int(out[batch].max()) - 1
            now, busy, steps = now + n_dec * step, busy + n_dec * step, steps + n_dec
            done += len(batch)
        return ServingResult("static", trace, first, finish, steps, busy)

    running: list[int] = []
    made = np.zeros(n, dtype=np.int64)  # tokens out so far
    while done < n:
        nxt = admit()
        if waiting and len(running) < max_batch:
            new = [waiting.popleft() for _ in range(min(max_batch - len(running), len(waiting)))]
            dt = cost.prefill_time(int(prompt[new].sum()))
            now, busy, steps = now + dt, busy + dt, steps + 1
            first[new] = now
            made[new] = 1
            running += new
        elif running:
            dt = cost.decode_time(len(running))
            now, busy, steps = now + dt, busy + dt, steps + 1
            made[running] += 1
        else:
            now = float(arrival[nxt])
            continue
        finished = [r for r in running if made[r] == out[r]]
        finish[finished] = now
        done += len(finished)
        running = [r for r in running if made[r] < out[r]]
    return ServingResult("continuous", trace, first, finish, steps, busy)


__all__ = [
    "POLICIES",
    "CostModel",
    "ServingResult",
    "Trace",
    "decode_step_seconds",
    "fit_cost_model",
    "matmul_flops_per_s",
    "measure_step_costs",
    "memory_bandwidth",
    "percentiles",
    "poisson_arrivals",
    "roofline",
    "simulate",
    "step_cost",
]
