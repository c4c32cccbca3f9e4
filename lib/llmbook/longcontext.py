r"""Long context: memory of attention, streaming with attention sinks, stretching RoPE, and
the needle-in-a-haystack test (Chapter 14).

* :func:`peak_tensor_memory` — the largest number of bytes held by live tensors during a
  call, counted op by op, to compare exact attention (a :math:`T \times T` score matrix)
  with :func:`llmbook.attention.tiled_attention` (one tile at a time).
* :class:`StreamingKVCache` and :func:`streaming_nll` — StreamingLLM (Xiao et al. 2024):
  a cache that keeps the first ``n_sink`` tokens (the *attention sinks*) and the last
  ``window`` tokens, with positions counted inside the cache, so that a RoPE model reads a
  stream of any length with constant memory. :func:`windowed_nll` is the expensive
  reference: every token recomputed from its last ``context`` tokens.
* :func:`extend_context` — a copy of a RoPE model with a longer context and its rotation
  frequencies set by a scaling rule of :func:`llmbook.positional.rope_frequencies` (position
  interpolation, NTK-aware, YaRN with its attention factor).
* :func:`needle_batch`, :func:`train_needle`, :func:`needle_prompt`,
  :func:`needle_accuracy` — a synthetic retrieval task inside Shakespeare's text: a
  sentence such as "The magic number is 7." hidden at a chosen depth, a cue at the end,
  and the share of prompts whose answer the model completes exactly.
"""

from __future__ import annotations

import copy
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from tqdm import tqdm

from llmbook._validate import (
    check_bool,
    check_choice,
    check_id_array,
    check_int,
    check_number,
    check_type,
    show,
)
from llmbook.attention import KVCache
from llmbook.gpt import GPT
from llmbook.positional import SCALINGS, apply_rope, rope_frequencies, yarn_attention_factor
from llmbook.tokenizer import BPETokenizer
from llmbook.train import (
    History,
    TrainConfig,
    configure_optimizer,
    lr_at,
    resolve_precision,
    train_step,
)

#: The needle, a sentence with the number to find, inserted into the haystack.
NEEDLE: str = " The magic number is {}. "
#: The cue at the end of a prompt; the model answers by completing it with the number.
CUE: str = "\nThe magic number is "


# --------------------------------------------------------------------------- memory
class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages that tensors created inside the mode keep alive."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, list[int]] = {}  # storage address -> [bytes, live tensors]
        self.live = self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.refs.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.live -= entry[0]
                del self.refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, Tensor)
        }
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if ptr in self.refs:
                self.refs[ptr][1] += 1  # a view of a storage made here
            elif ptr in inputs or nbytes == 0:
                continue  # an input (or a view of one), or nothing
            else:
                self.refs[ptr] = [nbytes, 1]
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, ptr)
        return out


def peak_tensor_memory(fn: Callable[[], Any]) -> tuple[int, Any]:
    r"""Run ``fn()`` and return ``(peak, fn())``: the largest number of bytes that tensors
    created during the call held at one time (Chapter 14).

    Every operation's outputs pass through a ``TorchDispatchMode``; a new storage adds its
    bytes when it is made and removes them when the last tensor using it is freed. Inputs
    and tensors that existed before the call are not counted, so the result is the extra
    memory the computation needs: for exact attention it grows like :math:`T^2` (the score
    and weight matrices), for :func:`llmbook.attention.tiled_attention` like :math:`T`.
    It counts tensor storage only (not the allocator's rounding or Python objects) and
    works on any device.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a callable that takes no argument, got {show(fn)}")
    mode = _LiveBytes()
    with mode:
        out = fn()
    return mode.peak, out


# ------------------------------------------------------------------------ streaming
def _rope_model(model: object, name: str = "model") -> GPT:
    check_type(name, model, GPT, "an llmbook.gpt.GPT")
    if model.config.positional != "rope":  # type: ignore[union-attr]
        raise ValueError(
            f"{name} must use positional='rope', got {model.config.positional!r}"  # type: ignore[union-attr]
        )
    if not model.config.prenorm:  # type: ignore[union-attr]
        raise ValueError(f"{name} must be a pre-norm model (prenorm=True)")
    return model  # type: ignore[return-value]


class StreamingKVCache(KVCache):
    r"""A KV cache of fixed size that keeps ``n_sink`` first tokens and the last ``window``
    tokens, with positions counted inside the cache (StreamingLLM, Chapter 14).

    Until it is full it is a :class:`~llmbook.attention.KVCache` of
    :math:`n_{\text{sink}} + w` positions. Then each new token evicts the oldest token that
    is not a sink, the later ones move one slot down, and so does their position: their
    keys, stored already rotated by RoPE, are rotated by :math:`-1` position
    (:math:`R_{p-1} = R_{-1} R_p`). So the key in slot :math:`i` always carries position
    :math:`i`, and the model never sees a position beyond :math:`n_{\text{sink}} + w - 1`
    however long the stream. ``freqs`` are the layer's RoPE frequencies
    (``block.attn.rope_freqs``); keys use the ``"half"`` layout of
    :class:`llmbook.gpt.CausalSelfAttention`. Once full, tokens must arrive one at a time.
    """

    def __init__(self, n_sink: int, window: int, freqs: Tensor) -> None:
        self.n_sink = check_int("n_sink", n_sink, 0)
        self.window = check_int("window", window, 1)
        if not isinstance(freqs, Tensor) or freqs.ndim != 1 or not freqs.is_floating_point():
            raise ValueError(
                f"freqs must be a 1-d float tensor of RoPE frequencies, got {show(freqs)}"
            )
        super().__init__(self.n_sink + self.window)
        self.freqs = freqs
        self.evicted = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``, ``v`` ``(B, n_kv_head, T_new, d_head)``, evicting as needed; return
        the cache's keys and values."""
        T_new = k.shape[2] if isinstance(k, Tensor) and k.ndim == 4 else 0
        if self._k is None or self.length + T_new <= self.max_len:
            return super().update(k, v)
        if T_new != 1 or self.length != self.max_len:
            raise ValueError(
                f"a full streaming cache takes one token at a time, got T_new={T_new} with "
                f"{self.length} of {self.max_len} slots used"
            )
        if tuple(k.shape) != (*self._k.shape[:2], 1, self._k.shape[3]) or k.dtype != self._k.dtype:
            raise ValueError(f"k of shape {tuple(k.shape)} does not match the cache's keys")
        if v.shape[:3] != k.shape[:3] or v.shape[3] != self._v.shape[3]:  # type: ignore[union-attr]
            raise ValueError(f"v of shape {tuple(v.shape)} does not match the cache's values")
        S = self.n_sink
        back = torch.tensor([-1.0], device=k.device)
        moved = apply_rope(self._k[:, :, S + 1 :], back, freqs=self.freqs, layout="half")
        self._k[:, :, S:-1] = moved
        self._v[:, :, S:-1] = self._v[:, :, S + 1 :].clone()  # type: ignore[index]
        self._k[:, :, -1:] = k
        self._v[:, :, -1:] = v  # type: ignore[index]
        self.evicted += 1
        return self._k, self._v  # type: ignore[return-value]


def _ids(ids: object) -> Tensor:
    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    ok = isinstance(ids, Tensor) and ids.ndim in (1, 2) and not ids.is_floating_point()
    if not ok or ids.dtype == torch.bool or ids.shape[-1] < 2:  # type: ignore[union-attr]
        raise ValueError(
            f"ids must be integer token ids, shape (N,) or (B, N) with N >= 2, got {show(ids)}"
        )
    ids = ids.long()  # type: ignore[union-attr]
    return ids[None] if ids.ndim == 1 else ids


@torch.no_grad()
def streaming_nll(model: GPT, ids: Tensor | np.ndarray, *, window: int, n_sink: int = 0) -> Tensor:
    r"""Per-token negative log-likelihood (nats) of a stream read through a
    :class:`StreamingKVCache` in every layer (Chapter 14).

    Tokens enter one at a time; token :math:`t` is scored from the cache's
    :math:`\min(t, n_{\text{sink}} + w)` tokens: the first ``n_sink`` and the last
    ``window``. ``n_sink=0`` is plain *window attention* (the oldest token leaves first).
    Returns ``(B, N - 1)`` for ``ids`` ``(B, N)`` (or ``(1, N - 1)`` for ``(N,)``): entry
    :math:`t` scores ``ids[:, t + 1]``.
    """
    model = _rope_model(model)
    ids = _ids(ids)
    window, n_sink = check_int("window", window, 1), check_int("n_sink", n_sink, 0)
    device = next(model.parameters()).device
    ids = ids.to(device)
    caches = [StreamingKVCache(n_sink, window, b.attn.rope_freqs) for b in model.blocks]
    B, N = ids.shape
    nll = torch.empty(B, N - 1, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for t in range(N - 1):
            pos = torch.tensor([min(t, n_sink + window - 1)], device=device)
            x = model.wte(ids[:, t : t + 1])
            for block, cache in zip(model.blocks, caches, strict=True):
                x = block(x, cache, positions=pos)
            logits = model.lm_head(model.ln_f(x))[:, -1].double()
            nll[:, t] = F.cross_entropy(logits, ids[:, t + 1], reduction="none")
    finally:
        model.train(was_training)
    return nll


@torch.no_grad()
def windowed_nll(
    model: GPT, ids: Tensor | np.ndarray, *, context: int, batch_size: int = 64
) -> Tensor:
    r"""Per-token negative log-likelihood (nats) with each token recomputed from its last
    ``context`` tokens (the sliding window *with recomputation*, Chapter 14).

    Token :math:`t + 1` is predicted from :math:`x_{\max(0, t - c + 1):t}` at positions
    :math:`0, 1, \dots`: the first ``context`` tokens by one causal pass, each later one by
    its own window of ``context`` tokens, so the cost is :math:`N c` token-passes instead
    of the :math:`N` of a cache. Returns ``(B, N - 1)`` like :func:`streaming_nll`.
    """
    check_type("model", model, GPT, "an llmbook.gpt.GPT")
    ids = _ids(ids)
    c = check_int("context", context, 1, model.config.block_size)
    batch_size = check_int("batch_size", batch_size, 1)
    device = next(model.parameters()).device
    ids = ids.to(device)
    B, N = ids.shape
    was_training = model.training
    model.eval()
    try:
        head = ids[:, : min(c, N)]
        logits = model(head)[0].double()
        parts = [F.cross_entropy(logits[:, :-1].transpose(1, 2), head[:, 1:], reduction="none")]
        if N > c:
            windows = ids.unfold(1, c, 1)[:, : N - c]  # (B, N - c, c): predict x_c .. x_{N-1}
            flat = windows.reshape(-1, c)
            last = torch.cat(
                [model(flat[i : i + batch_size])[0][:, -1] for i in range(0, len(flat), batch_size)]
            ).double()
            targets = ids[:, c:].reshape(-1)
            parts.append(F.cross_entropy(last, targets, reduction="none").view(B, N - c))
    finally:
        model.train(was_training)
    return torch.cat(parts, dim=1)


# ------------------------------------------------------------------------ extension
def extend_context(
    model: GPT,
    block_size: int,
    *,
    scaling: str = "none",
    scale: float = 1.0,
    original_length: int | None = None,
    alpha: float = 1.0,
    beta: float = 32.0,
    attn_implementation: str | None = None,
) -> GPT:
    r"""A copy of a RoPE ``model`` that reads up to ``block_size`` tokens, with every layer's
    rotation frequencies set by ``scaling`` (Chapter 14).

    RoPE has no position table, so a longer context is only a new ``block_size``; what
    changes the model is the frequencies: ``"none"`` keeps :math:`\theta_i` (the model
    meets angles it never saw), ``"linear"`` (position interpolation), ``"ntk"`` and
    ``"yarn"`` are :func:`llmbook.positional.rope_frequencies` with ``scale`` :math:`s`
    (Chapter 4). YaRN also multiplies queries and keys by
    :func:`~llmbook.positional.yarn_attention_factor`, folded here into the query and key
    projections (exact: RoPE is linear). ``original_length`` is the training context
    :math:`L` for YaRN's ramp (default: the model's ``block_size``).
    ``attn_implementation`` (``"explicit"`` or ``"fused"``, default: the model's) picks the
    attention path of the copy; the fused one needs far less memory at long lengths. The
    original model is not changed.
    """
    model = _rope_model(model)
    block_size = check_int("block_size", block_size, 1)
    check_choice("scaling", scaling, SCALINGS)
    scale = check_number("scale", scale, low=1.0, what="a finite number >= 1")
    L = model.config.block_size if original_length is None else original_length
    L = check_int("original_length", L, 1)
    cfg = copy.deepcopy(model.config)
    cfg.block_size = block_size
    if attn_implementation is not None:
        cfg.attn_implementation = check_choice(
            "attn_implementation", attn_implementation, ("explicit", "fused")
        )
    freqs = rope_frequencies(
        cfg.d_head,
        base=cfg.rope_base,
        scaling=scaling,
        scale=scale,
        original_length=L,
        alpha=alpha,
        beta=beta,
    )
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    new = GPT(cfg).to(device=device, dtype=dtype)
    new.load_state_dict(model.state_dict())
    factor = yarn_attention_factor(scale) if scaling == "yarn" else 1.0
    with torch.no_grad():
        for block in new.blocks:
            block.attn.rope_freqs = freqs.to(device=device, dtype=block.attn.rope_freqs.dtype)
            for proj in (block.attn.q_proj, block.attn.k_proj):
                proj.weight.mul_(factor)
                if proj.bias is not None:
                    proj.bias.mul_(factor)
    return new.train(model.training)


# --------------------------------------------------------------------------- needle
def _number(rng: random.Random, digits: int) -> str:
    return "".join(rng.sample("0123456789", digits))


def needle_batch(
    haystack: np.ndarray,
    tokenizer: BPETokenizer,
    batch_size: int,
    block_size: int,
    *,
    digits: int = 1,
    rng: random.Random,
) -> tuple[Tensor, Tensor]:
    r"""A batch of needle-in-a-haystack training examples, ``(x, y)`` of shape
    ``(batch_size, block_size)`` (Chapter 14).

    Each row is :math:`T + 1` tokens (``block_size`` :math:`= T`) of text that ends with
    :data:`CUE` and a number of ``digits`` distinct random digits; :data:`NEEDLE` with the
    same number sits at a uniformly random place before the cue, after a stretch of
    ``haystack`` token ids of uniformly random length, and more haystack fills the row
    from the left. ``x`` is the row without its last token, ``y`` without its first, with
    every target except the number's set to -100 (ignored by the loss): the model is
    trained on the retrieval only, every row aligned on one question. ``rng`` draws the
    lengths, places and numbers.
    """
    haystack = check_id_array("haystack", haystack)
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    batch_size = check_int("batch_size", batch_size, 1)
    T = check_int("block_size", block_size, 1)
    digits = check_int("digits", digits, 1, 10)
    check_type("rng", rng, random.Random, "a random.Random")
    cue = tokenizer.encode_ordinary(CUE)
    rows = []
    for _ in range(batch_size):
        number = _number(rng, digits)
        needle = tokenizer.encode_ordinary(NEEDLE.format(number))
        answer = tokenizer.encode_ordinary(number)
        room = T + 1 - len(needle) - len(cue) - len(answer)  # haystack tokens in the row
        if room < 0 or len(haystack) < room + 1:
            raise ValueError(
                f"block_size={T} must leave room for the needle, the cue and the answer, and "
                f"the haystack must hold more than {max(room, 0)} tokens"
            )
        n = rng.randint(0, room)  # haystack between the needle's place and the cue
        start = rng.randrange(len(haystack) - room)
        hay = haystack[start : start + room].tolist()
        filler, hay = hay[: room - n], hay[room - n :]
        prompt = needle_prompt(hay, needle, cue, rng.random())
        rows.append((filler + prompt + answer, len(answer)))
    X = torch.tensor([r for r, _ in rows])
    x, y = X[:, :-1].contiguous(), X[:, 1:].clone()
    for b, (_, k) in enumerate(rows):
        y[b, : T - k] = -100
    return x, y


def train_needle(
    model: GPT,
    haystack: np.ndarray,
    val_haystack: np.ndarray | None,
    tokenizer: BPETokenizer,
    cfg: TrainConfig,
    *,
    digits: int = 1,
    progress: bool = True,
) -> History:
    r"""Train ``model`` on the needle task with batches of :func:`needle_batch` (Chapter 14).

    The loop of :func:`llmbook.train.train` (AdamW, :func:`~llmbook.train.lr_at`'s warmup
    and cosine, gradient clipping, :func:`~llmbook.train.train_step`) on retrieval batches
    drawn with ``random.Random(cfg.seed)``; every ``cfg.eval_interval`` steps the loss on
    ``cfg.eval_batches`` fixed batches from ``val_haystack`` is recorded. Returns the
    :class:`~llmbook.train.History` (tokens counted are the rows' tokens). ``progress``
    shows a tqdm bar (``TQDM_DISABLE=1`` in the environment also hides it).
    """
    check_type("model", model, GPT, "an llmbook.gpt.GPT")
    check_type("cfg", cfg, TrainConfig, "a TrainConfig")
    progress = check_bool("progress", progress)
    device = next(model.parameters()).device
    rng = random.Random(cfg.seed)
    val = []
    if val_haystack is not None:
        vrng = random.Random(cfg.seed + 1)
        val = [
            needle_batch(
                val_haystack, tokenizer, cfg.batch_size, cfg.block_size, digits=digits, rng=vrng
            )
            for _ in range(cfg.eval_batches)
        ]
    optimizer = configure_optimizer(model, cfg)
    history = History(precision=resolve_precision(cfg.precision, device))

    def validate(step: int) -> None:
        if val:
            model.eval()
            with torch.no_grad():
                losses = [model(x.to(device), y.to(device))[1].item() for x, y in val]
            model.train()
            history.val_steps.append(step)
            history.val_losses.append(sum(losses) / len(losses))

    model.train()
    validate(0)
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    bar = tqdm(
        total=cfg.max_steps, desc="needle training", unit="step", disable=quiet or not progress
    )
    for step in range(cfg.max_steps):
        t0 = time.perf_counter()
        x, y = needle_batch(
            haystack, tokenizer, cfg.batch_size, cfg.block_size, digits=digits, rng=rng
        )
        lr = lr_at(step, cfg)
        loss, norm = train_step(
            model,
            optimizer,
            [(x.to(device), y.to(device))],
            lr=lr,
            grad_clip=cfg.grad_clip,
            precision=history.precision,
        )
        history.steps.append(step + 1)
        history.lrs.append(lr)
        history.train_losses.append(loss)
        history.grad_norms.append(norm)
        seen = history.tokens_seen[-1] if history.tokens_seen else 0
        history.tokens_seen.append(seen + cfg.batch_size * cfg.block_size)
        done = history.elapsed[-1] if history.elapsed else 0.0
        history.elapsed.append(done + time.perf_counter() - t0)
        if (step + 1) % cfg.eval_interval == 0 or step + 1 == cfg.max_steps:
            validate(step + 1)
        bar.update(1)
        if (step + 1) % cfg.log_interval == 0:
            bar.set_postfix({"loss": f"{loss:.3f}"}, refresh=False)
    bar.close()
    model.eval()
    return history


def needle_prompt(
    haystack: Sequence[int], needle: Sequence[int], cue: Sequence[int], depth: float
) -> list[int]:
    r"""Token ids of a needle-in-a-haystack prompt: ``haystack`` with ``needle`` inserted
    after the first :math:`\operatorname{round}(\text{depth}\cdot n)` of its :math:`n`
    tokens, then ``cue`` (Chapter 14). ``depth`` 0 puts the needle first, 1 right before
    the cue."""
    depth = check_number("depth", depth, low=0.0, high=1.0)
    for name, seq in (("haystack", haystack), ("needle", needle), ("cue", cue)):
        if not isinstance(seq, Sequence) or isinstance(seq, str):
            raise ValueError(f"{name} must be a sequence of token ids, got {show(seq)}")
    if not needle or not cue:
        raise ValueError("needle and cue must not be empty")
    cut = round(depth * len(haystack))
    return [*haystack[:cut], *needle, *haystack[cut:], *cue]


@torch.no_grad()
def needle_accuracy(
    model: GPT,
    tokenizer: BPETokenizer,
    haystack: str,
    lengths: Sequence[int],
    depths: Sequence[float],
    *,
    trials: int = 20,
    digits: int = 1,
    seed: int = 0,
) -> np.ndarray:
    r"""The share of prompts whose number the model completes exactly, for each prompt
    length (in tokens) and needle depth: shape ``(len(lengths), len(depths))`` (Chapter 14).

    For each length :math:`T` and trial, a random stretch of ``haystack`` is cut to
    :math:`T` tokens minus the needle and the cue, a random number of ``digits`` distinct
    digits is hidden at each depth (:func:`needle_prompt`: the same stretch and number for
    every depth), and the model continues the prompt greedily for as many tokens as the
    number has; the trial counts when the decoded continuation is the number. Guessing
    scores :math:`\prod_{i<\text{digits}} 1/(10 - i)` (1/10 for one digit). Every length
    must fit the model's ``block_size`` (see :func:`extend_context`).
    """
    check_type("model", model, GPT, "an llmbook.gpt.GPT")
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    if not isinstance(haystack, str):
        raise ValueError(f"haystack must be a str, got {show(haystack)}")
    trials, digits = check_int("trials", trials, 1), check_int("digits", digits, 1, 10)
    rng = random.Random(check_int("seed", seed, 0))
    hay = tokenizer.encode_ordinary(haystack)
    cue = tokenizer.encode_ordinary(CUE)
    if not isinstance(lengths, Sequence) or not lengths:
        raise ValueError(f"lengths must be a non-empty sequence of integers, got {show(lengths)}")
    if not isinstance(depths, Sequence) or not depths:
        raise ValueError(f"depths must be a non-empty sequence of numbers, got {show(depths)}")
    depths = [check_number("depths", d, low=0.0, high=1.0) for d in depths]
    device = next(model.parameters()).device
    acc = np.zeros((len(lengths), len(depths)))
    for a, T in enumerate(lengths):
        T = check_int("lengths", T, 1, model.config.block_size - digits)
        numbers = [_number(rng, digits) for _ in range(trials)]
        needles = [tokenizer.encode_ordinary(NEEDLE.format(n)) for n in numbers]
        sizes = {T - len(nd) - len(cue) for nd in needles}
        if min(sizes) < 0 or len(hay) < T + 1:
            raise ValueError(f"lengths must leave room for the needle and the cue, got {T}")
        starts = [rng.randrange(len(hay) - T) for _ in range(trials)]
        for b, depth in enumerate(depths):
            prompts = [
                needle_prompt(hay[s : s + T - len(nd) - len(cue)], nd, cue, depth)
                for s, nd in zip(starts, needles, strict=True)
            ]
            hits = 0
            groups: dict[tuple[int, int], list[int]] = {}  # equal lengths run as one batch
            for i, (prompt, number) in enumerate(zip(prompts, numbers, strict=True)):
                key = (len(prompt), len(tokenizer.encode_ordinary(number)))
                groups.setdefault(key, []).append(i)
            for (n, k), rows in groups.items():
                for i in range(0, len(rows), 8):
                    chunk = rows[i : i + 8]
                    x = torch.tensor([prompts[r] for r in chunk], device=device)
                    out = model.generate(x, k, greedy=True)[:, n:].tolist()
                    hits += sum(
                        tokenizer.decode(o) == numbers[r] for o, r in zip(out, chunk, strict=True)
                    )
            acc[a, b] = hits / trials
    return acc


__all__ = [
    "CUE",
    "NEEDLE",
    "StreamingKVCache",
    "extend_context",
    "needle_accuracy",
    "needle_batch",
    "needle_prompt",
    "peak_tensor_memory",
    "streaming_nll",
    "train_needle",
    "windowed_nll",
]
