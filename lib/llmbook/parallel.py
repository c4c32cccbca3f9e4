r"""Training across processes and within memory: a small distributed engine (Chapter 9).

Three ways to spread training over :math:`p` workers, run for real with
``torch.distributed`` (gloo backend, processes on one CPU) by :func:`run_workers`:

* **data parallelism**: every rank holds the whole model, computes the gradient of its
  own slice of the batch, and an all-reduce averages the gradients, so that every rank
  takes the step of the full batch (:func:`ddp_train`, with
  ``DistributedDataParallel``, equals :func:`reference_train`);
* **sharding** (ZeRO, FSDP): ranks keep only :math:`1/p` of the weights, gradients and
  optimizer state and gather the rest when needed (:func:`fsdp_train`);
* **tensor parallelism** (Megatron-LM): the first FFN matrix is split by columns and the
  second by rows, so :math:`\mathrm{GELU}(\mathbf x W_1) W_2 = \sum_r
  \mathrm{GELU}(\mathbf x W_1^{(r)})\,W_2^{(r)}` needs one all-reduce
  (:func:`tensor_parallel_mlp`).

Pipeline parallelism is simulated (:func:`pipeline_schedule`); the memory of one device
is measured by :func:`saved_tensor_bytes` and traded for time by
:func:`forward_checkpointed`. Worker functions live here, not in a notebook, because the
``spawn`` start method pickles them by name.
"""

from __future__ import annotations

import io
import os
import queue as queue_module
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.checkpoint import checkpoint

from llmbook._validate import check_choice, check_int, check_number, check_type
from llmbook.gpt import GPT, GPTConfig


# ------------------------------------------------------------------------ process group
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world_size: int, port: int, fn: Callable, args: tuple, results) -> None:
    """One worker: join the gloo group, run ``fn(rank, world_size, *args)``, report."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        buffer = io.BytesIO()  # tensors by value: a shared-memory handle dies with the child
        torch.save(fn(rank, world_size, *args), buffer)
        results.put((rank, True, buffer.getvalue()))
    except BaseException:  # report every failure to the parent, then exit
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_workers(
    fn: Callable[..., Any], world_size: int = 2, args: Sequence[Any] = (), timeout: float = 120.0
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes joined in a
    gloo process group on 127.0.0.1; return the results in rank order.

    ``fn`` must be importable by name (a module-level function such as :func:`ddp_train`).
    Workers run with one thread each (``OMP_NUM_THREADS=1``). The processes are always
    joined; any still alive after ``timeout`` seconds, or after another worker failed, are
    killed. A failure raises ``RuntimeError`` with the worker's traceback.
    """
    if not callable(fn) or getattr(fn, "__name__", "<lambda>") == "<lambda>":
        raise ValueError("fn must be a module-level function (spawn pickles it by name)")
    world_size = check_int("world_size", world_size, 1, 16)
    timeout = check_number("timeout", timeout, low=0, strict=True)
    check_type("args", args, (tuple, list), "a tuple or list")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children
    procs = [
        ctx.Process(target=_entry, args=(r, world_size, port, fn, tuple(args), results))
        for r in range(world_size)
    ]
    out: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        while len(out) + len(errors) < world_size:
            try:
                rank, ok, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_module.Empty:
                errors.append(f"timed out after {timeout:.0f} s")
                break
            if ok:
                out[rank] = torch.load(io.BytesIO(value), weights_only=True)
            else:
                errors.append(f"rank {rank}:\n{value}")
                break
    finally:
        for p in procs:
            p.join(timeout=5.0 if not errors else 1.0)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        if old is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = old
    if errors:
        raise RuntimeError("a worker failed: " + errors[0])
    return [out[r] for r in range(world_size)]


# ------------------------------------------------------------------------ a toy task
#: The tiny GPT that the distributed demos train (float64, so that equalities are tight).
TOY_CONFIG = GPTConfig(
    vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=32, tie_embeddings=False
)


def toy_model(seed: int = 0) -> GPT:
    """A float64 GPT of :data:`TOY_CONFIG` with seeded weights."""
    seed = check_int("seed", seed, 0)
    torch.manual_seed(seed)
    return GPT(TOY_CONFIG).double()


def toy_batch(step: int, batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The global batch of ``step``: ``batch`` random windows and their next tokens."""
    step, batch, seed = check_int("step", step, 0), check_int("batch", batch, 1), int(seed)
    g = torch.Generator().manual_seed(1000 * seed + step)
    ids = torch.randint(0, TOY_CONFIG.vocab_size, (batch, TOY_CONFIG.block_size + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def flat_parameters(model: torch.nn.Module) -> Tensor:
    """All parameters of ``model`` as one detached vector (DTensors gathered)."""
    check_type("model", model, torch.nn.Module, "a torch.nn.Module")
    parts = []
    for p in model.parameters():
        p = p.full_tensor() if hasattr(p, "full_tensor") else p
        parts.append(p.detach().reshape(-1))
    return torch.cat(parts)


def _train(model: torch.nn.Module, steps: int, lr: float, batch: int, seed: int, part) -> tuple:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    losses = []
    for s in range(steps):
        x, y = toy_batch(s, batch, seed)
        _, loss = model(x[part], y[part])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, opt


def reference_train(
    steps: int = 5, lr: float = 1e-2, batch: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Single-process AdamW training of :func:`toy_model` on the full batches:
    ``params`` (flat, float64) and ``losses``."""
    steps, batch = check_int("steps", steps, 1), check_int("batch", batch, 1)
    lr = check_number("lr", lr, low=0, strict=True)
    model = toy_model(seed)
    losses, _ = _train(model, steps, lr, batch, seed, slice(None))
    return {"params": flat_parameters(model), "losses": losses}


def _shard(rank: int, world_size: int, batch: int) -> slice:
    if batch % world_size:
        raise ValueError(f"batch must be divisible by world_size={world_size}, got {batch}")
    n = batch // world_size
    return slice(rank * n, (rank + 1) * n)


def ddp_train(
    rank: int, world_size: int, steps: int = 5, lr: float = 1e-2, batch: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Worker: :func:`toy_model` wrapped in ``DistributedDataParallel``, trained on this
    rank's slice of each batch. DDP averages the gradients over the ranks, so the result
    equals :func:`reference_train` on the full batches. Returns ``params`` and ``losses``
    (this rank's)."""
    part = _shard(rank, world_size, batch)
    model = torch.nn.parallel.DistributedDataParallel(toy_model(seed))
    losses, _ = _train(model, steps, lr, batch, seed, part)
    return {"params": flat_parameters(model.module), "losses": losses}


def _bytes(tensors: Iterable[Tensor]) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def fsdp_train(
    rank: int, world_size: int, steps: int = 5, lr: float = 1e-2, batch: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Worker: :func:`toy_model` sharded with ``fully_shard`` (FSDP2, ZeRO stage 3: each
    block and the rest are sharded along their first dimension), trained like
    :func:`ddp_train`. Returns the gathered ``params``, ``losses`` and the bytes this rank
    holds after the last step: ``weights``, ``gradients``, ``optimizer`` (Adam's m and v)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    part = _shard(rank, world_size, batch)
    mesh = init_device_mesh("cpu", (world_size,))
    model = toy_model(seed)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    losses, opt = _train(model, steps, lr, batch, seed, part)
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    states = [s[k] for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq")]
    return {
        "params": flat_parameters(model),
        "losses": losses,
        "weights": _bytes(params),
        "gradients": _bytes(grads),
        "optimizer": _bytes(states),
    }


def tensor_parallel_mlp(
    rank: int, world_size: int, d_model: int = 64, d_ff: int = 256, seed: int = 0
) -> dict[str, float]:
    r"""Worker: the FFN :math:`\mathrm{GELU}(\mathbf x W_1 + \mathbf b_1) W_2 + \mathbf b_2`
    with :math:`W_1` split by columns and :math:`W_2` by rows over the ranks; one
    all-reduce sums the partial outputs. Returns ``max_abs_error`` against the full layer
    (float64) and the ``shard_fraction`` of the FFN weights this rank holds."""
    d_model, d_ff = check_int("d_model", d_model, 1), check_int("d_ff", d_ff, 1)
    if d_ff % world_size:
        raise ValueError(f"d_ff must be divisible by world_size={world_size}, got {d_ff}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, d_model, generator=g, dtype=torch.float64)
    W1 = torch.randn(d_model, d_ff, generator=g, dtype=torch.float64) / d_model**0.5
    b1 = torch.randn(d_ff, generator=g, dtype=torch.float64)
    W2 = torch.randn(d_ff, d_model, generator=g, dtype=torch.float64) / d_ff**0.5
    b2 = torch.randn(d_model, generator=g, dtype=torch.float64)
    cols = _shard(rank, world_size, d_ff)  # this rank's hidden units
    y = F.gelu(x @ W1[:, cols] + b1[cols]) @ W2[cols, :]
    dist.all_reduce(y)  # sum of the partial products
    y = y + b2
    full = F.gelu(x @ W1 + b1) @ W2 + b2
    held = W1[:, cols].numel() + W2[cols, :].numel()
    return {
        "max_abs_error": (y - full).abs().max().item(),
        "shard_fraction": held / (W1.numel() + W2.numel()),
    }


def allreduce_times(
    rank: int, world_size: int, sizes: Sequence[int] = (2**10, 2**16, 2**20), repeats: int = 10
) -> list[float]:
    """Worker: the best (smallest) of ``repeats`` timings, in seconds, of ``dist.all_reduce``
    on float32 tensors of ``sizes`` elements, after one warm-up call each; the minimum is
    the measurement least disturbed by other processes."""
    out = []
    for n in sizes:
        n = check_int("sizes", n, 1)
        t = torch.ones(n)
        dist.all_reduce(t)
        runs = []
        for _ in range(check_int("repeats", repeats, 1)):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            runs.append(time.perf_counter() - t0)
        out.append(min(runs))
    return out


def chapter_demos(rank: int, world_size: int, steps: int, sizes: Sequence[int]) -> dict:
    """Worker: everything Chapter 9 runs in one process group (spawning costs seconds):
    ``ddp`` (:func:`ddp_train`), ``fsdp`` (:func:`fsdp_train`), ``tensor_parallel``
    (:func:`tensor_parallel_mlp`) and ``allreduce`` (:func:`allreduce_times`)."""
    return {
        "ddp": ddp_train(rank, world_size, steps),
        "fsdp": fsdp_train(rank, world_size, steps),
        "tensor_parallel": tensor_parallel_mlp(rank, world_size),
        "allreduce": allreduce_times(rank, world_size, sizes),
    }


# ---------------------------------------------------------------------- pipelines
@dataclass(frozen=True)
class PipelineOp:
    """One pass of one micro-batch on one stage: ``kind`` "F" or "B", from ``start`` to
    ``end`` (in units of a forward pass)."""

    stage: int
    micro: int
    kind: str
    start: float
    end: float

    def __post_init__(self) -> None:
        check_int("stage", self.stage, 0)
        check_int("micro", self.micro, 0)
        check_choice("kind", self.kind, ("F", "B"))
        start = check_number("start", self.start, low=0)
        check_number("end", self.end, low=start)


def _stage_order(stage: int, p: int, m: int, schedule: str) -> list[tuple[str, int]]:
    if schedule == "gpipe":  # all forwards, then all backwards
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    warm = min(p - stage - 1, m)  # 1F1B: warm up, then one forward, one backward
    order = [("F", i) for i in range(warm)]
    f, b = warm, 0
    while b < m:
        if f < m:
            order.append(("F", f))
            f += 1
        order.append(("B", b))
        b += 1
    return order


def pipeline_schedule(
    n_stages: int,
    n_micro: int,
    schedule: str = "gpipe",
    t_forward: float = 1.0,
    t_backward: float = 2.0,
) -> list[PipelineOp]:
    """Simulate a pipeline of ``n_stages`` stages on ``n_micro`` micro-batches.

    Each stage runs its passes in the order of ``schedule`` — ``"gpipe"`` (Huang et al.
    2019: all forwards, then all backwards) or ``"1f1b"`` (PipeDream-Flush, Narayanan et
    al. 2021: after :math:`p - s - 1` warm-up forwards, alternate one forward and one
    backward) — and starts a pass as soon as the stage is free and its input is ready: a
    forward needs the previous stage's forward of the same micro-batch, a backward the
    next stage's backward (the last stage: its own forward).
    """
    p, m = check_int("n_stages", n_stages, 1), check_int("n_micro", n_micro, 1)
    check_choice("schedule", schedule, ("gpipe", "1f1b"))
    tf = check_number("t_forward", t_forward, low=0, strict=True)
    tb = check_number("t_backward", t_backward, low=0, strict=True)
    orders = [_stage_order(s, p, m, schedule) for s in range(p)]
    nxt, free = [0] * p, [0.0] * p
    done: dict[tuple[str, int, int], float] = {}
    ops: list[PipelineOp] = []
    while len(ops) < 2 * p * m:
        progressed = False
        for s in range(p):
            if nxt[s] == len(orders[s]):
                continue
            kind, i = orders[s][nxt[s]]
            if kind == "F":
                need = ("F", s - 1, i) if s > 0 else None
            else:
                need = ("B", s + 1, i) if s < p - 1 else ("F", s, i)
            if need is not None and need not in done:
                continue
            start = max(free[s], done[need] if need else 0.0)
            end = start + (tf if kind == "F" else tb)
            ops.append(PipelineOp(s, i, kind, start, end))
            done[(kind, s, i)], free[s], nxt[s] = end, end, nxt[s] + 1
            progressed = True
        assert progressed, "pipeline schedule deadlocked"
    return ops


def bubble_fraction(ops: Sequence[PipelineOp]) -> float:
    """Measured idle fraction of a simulated pipeline: 1 − busy time / (stages ×
    makespan)."""
    if not ops or not all(isinstance(o, PipelineOp) for o in ops):
        raise ValueError("ops must be a non-empty list of PipelineOp (pipeline_schedule)")
    p = 1 + max(o.stage for o in ops)
    span = max(o.end for o in ops) - min(o.start for o in ops)
    return 1 - sum(o.end - o.start for o in ops) / (p * span)


def peak_in_flight(ops: Sequence[PipelineOp]) -> list[int]:
    """Per stage, the most micro-batches whose forward is done and backward not yet: the
    activations that stage must hold at once."""
    if not ops or not all(isinstance(o, PipelineOp) for o in ops):
        raise ValueError("ops must be a non-empty list of PipelineOp (pipeline_schedule)")
    p = 1 + max(o.stage for o in ops)
    peaks = []
    for s in range(p):
        held, peak = 0, 0
        for o in sorted((o for o in ops if o.stage == s), key=lambda o: o.start):
            held += 1 if o.kind == "F" else -1
            peak = max(peak, held)
        peaks.append(peak)
    return peaks


# ------------------------------------------------------------------ memory on one device
def saved_tensor_bytes(fn: Callable[[], Any], exclude: Iterable[Tensor] = ()) -> tuple[int, Any]:
    """Run ``fn()`` and measure what autograd saves for the backward pass.

    Every tensor saved by an operation passes through
    ``torch.autograd.graph.saved_tensors_hooks``; the bytes of their distinct storages
    are summed, leaving out the storages of ``exclude`` (e.g. the model's parameters,
    which are saved by reference and are not activations). Returns ``(bytes, fn())``.
    """
    if not callable(fn):
        raise ValueError("fn must be a callable that takes no argument")
    skip = set()
    for t in exclude:
        check_type("exclude", t, Tensor, "an iterable of tensors")
        skip.add(t.untyped_storage().data_ptr())
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def forward_checkpointed(model: GPT, idx: Tensor, targets: Tensor, segment: int = 1) -> Tensor:
    r"""The loss of ``model(idx, targets)`` with activation checkpointing: the blocks are
    cut into segments of ``segment`` blocks, each run under ``torch.utils.checkpoint``,
    which keeps only the segment's input and recomputes its inside during backward
    (Chen et al. 2016). Learned or sinusoidal positions only (RoPE models rotate inside
    the attention and work too). Equal to the plain loss and gradients."""
    check_type("model", model, GPT, "a GPT")
    L = model.config.n_layer
    segment = check_int("segment", segment, 1, L)
    idx, targets = model._check_idx(idx), model._check_targets(targets, idx)
    x = model.wte(idx)
    if model.wpe is not None:
        x = model.wpe(x, 0)
    elif model.config.positional == "sinusoidal":
        x = x + model.sinusoid[: idx.shape[1]].to(x.dtype)

    def run(first: int, x: Tensor) -> Tensor:
        for block in model.blocks[first : first + segment]:
            x = block(x)
        return x

    for first in range(0, L, segment):
        x = checkpoint(run, first, x, use_reentrant=False)
    logits = model.lm_head(model.ln_f(x))
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


__all__ = [
    "TOY_CONFIG",
    "PipelineOp",
    "allreduce_times",
    "bubble_fraction",
    "chapter_demos",
    "ddp_train",
    "flat_parameters",
    "forward_checkpointed",
    "free_port",
    "fsdp_train",
    "peak_in_flight",
    "pipeline_schedule",
    "reference_train",
    "run_workers",
    "saved_tensor_bytes",
    "tensor_parallel_mlp",
    "toy_batch",
    "toy_model",
]
