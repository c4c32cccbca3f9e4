r"""Logits processors and the next-token choice: how a decoder turns scores into a token
(Chapter 12).

A *processor* maps the tokens so far and the next-token scores to new scores,
``processor(input_ids (B, t), scores (B, V)) -> (B, V)``; masked tokens get :math:`-\infty`.
Processors compose left to right (:func:`compose`), and the result goes to
:func:`sample_next` (:math:`x_{t+1} \sim \operatorname{softmax}(z)`, with an explicit
``torch.Generator``) or :func:`greedy_next` (:math:`\arg\max z`).

* warpers: :class:`Temperature`, :class:`TopK`, :class:`TopP` (nucleus), :class:`MinP`,
  :class:`Typical`;
* penalties: :class:`RepetitionPenalty` (CTRL), :class:`FrequencyPresencePenalty` (OpenAI),
  :class:`NoRepeatNGram`.

Each warper and :class:`RepetitionPenalty`, :class:`NoRepeatNGram` runs the same tensor
operations as its Hugging Face ``transformers`` counterpart (``TemperatureLogitsWarper``,
``TopKLogitsWarper``…), so the outputs are *equal*, ``-inf`` positions and ties included
(tested with ``torch.equal``). Two differences at the boundary: ids of ``input_ids``
must lie in ``[0, V)`` (``transformers`` silently skips larger ones), and scores holding NaN or
:math:`+\infty` are refused. Greedy decoding is explicit: a temperature of 0 is refused.

Two loops run the book's :class:`~llmbook.gpt.GPT` with its
:class:`~llmbook.attention.KVCache`: :func:`generate` (sampling or greedy, one token per
step through the processors) and :func:`beam_search` (length penalty, early stopping,
n-best lists). Both follow ``transformers``' ``generate`` step for step (its ``_sample``
and ``_beam_search`` in ``generation/utils.py``), so with the same weights and seed they
return the same tokens, and beam search the same sequence scores (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook._validate import (
    check_bool,
    check_float_tensor,
    check_int,
    check_int_ids,
    check_number,
    check_type,
    show,
)
from llmbook.attention import KVCache
from llmbook.gpt import GPT, MIN_TEMPERATURE

Processor = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------ checks
def _check_scores(scores: object) -> Tensor:
    scores = check_float_tensor("scores", scores, ndim=2, shape="(B, V)")
    if bool((torch.isnan(scores) | (scores == math.inf)).any()):
        raise ValueError("scores must hold finite numbers or -inf, got NaN or +inf")
    return scores


def _check_inputs(input_ids: object, scores: object) -> tuple[Tensor, Tensor]:
    """The two arguments of every processor: ``input_ids`` (B, t) ids < V, ``scores`` (B, V)."""
    scores = _check_scores(scores)
    input_ids = check_int_ids("input_ids", input_ids, ndim=2, high=scores.shape[1])
    if input_ids.shape[0] != scores.shape[0]:
        raise ValueError(
            f"input_ids and scores must have the same batch size B, got "
            f"{input_ids.shape[0]} and {scores.shape[0]}"
        )
    return input_ids.to(scores.device), scores


def _keep(name: str, value: object) -> int:
    return check_int(name, value, 1)


def _presence(input_ids: Tensor, V: int) -> Tensor:
    """(B, V) bool: which tokens occur in each row of ``input_ids``."""
    mask = torch.zeros(input_ids.shape[0], V, dtype=torch.bool, device=input_ids.device)
    return mask.scatter_(1, input_ids, True)


# --------------------------------------------------------------------------- warpers
class Temperature:
    r"""Divide the scores by the temperature: :math:`z_i / \tau`.

    :math:`\tau < 1` sharpens the distribution, :math:`\tau > 1` flattens it. ``temperature``
    must be at least :data:`llmbook.gpt.MIN_TEMPERATURE` (below it :math:`z/\tau` can
    overflow); the limit :math:`\tau \to 0` is :func:`greedy_next`.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = check_number(
            "temperature",
            temperature,
            low=MIN_TEMPERATURE,
            what=f"a finite number >= MIN_TEMPERATURE = {MIN_TEMPERATURE:g} "
            "(for temperature 0 use greedy_next)",
        )

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        return scores / self.temperature


class TopK:
    r"""Keep the ``top_k`` highest scores (at least ``min_tokens_to_keep``), mask the rest.

    A token survives when :math:`z_i \ge z_{(k)}`, the k-th largest score, so tokens tied
    with it all survive. ``top_k >= V`` keeps everything.
    """

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1) -> None:
        top_k = check_int("top_k", top_k, 1)
        self.min_tokens_to_keep = _keep("min_tokens_to_keep", min_tokens_to_keep)
        self.top_k = max(top_k, self.min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        k = min(self.top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < kth, -math.inf)


class TopP:
    r"""Nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens
    whose probability reaches ``top_p``; mask the rest.

    Sorted ascending, a token is masked when the cumulative probability up to and including
    it is :math:`\le 1 - p`; the ``min_tokens_to_keep`` most likely always stay. Among tied
    scores at the boundary the sort order decides. ``top_p = 1`` masks only tokens whose
    probability underflows to 0.
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1) -> None:
        self.top_p = check_number("top_p", top_p, low=0.0, high=1.0, strict=True)
        self.min_tokens_to_keep = _keep("min_tokens_to_keep", min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_remove = cumulative <= (1 - self.top_p)
        sorted_remove[..., -self.min_tokens_to_keep :] = 0
        remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
        return scores.masked_fill(remove, -math.inf)


class MinP:
    r"""Min-p sampling (Nguyen et al. 2024): mask tokens with :math:`p_i < p_{\min}\,
    \max_j p_j`, keeping at least ``min_tokens_to_keep``. ``min_p = 0`` keeps everything."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1) -> None:
        self.min_p = check_number("min_p", min_p, low=0.0, high=1.0)
        self.min_tokens_to_keep = _keep("min_tokens_to_keep", min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        k = min(self.min_tokens_to_keep, probs.shape[-1])
        remove.scatter_(-1, torch.topk(probs, k, dim=-1).indices, False)
        return scores.masked_fill(remove, -math.inf)


class Typical:
    r"""Locally typical sampling (Meister et al. 2023): rank tokens by
    :math:`|{-\log p_i} - H(p)|`, how far their surprisal is from the entropy, and keep the
    most typical ones up to probability ``mass`` (at least ``min_tokens_to_keep``).

    ``mass = 1`` keeps everything (as ``transformers``' ``generate`` skips ``typical_p=1``).
    """

    def __init__(self, mass: float = 0.9, min_tokens_to_keep: int = 1) -> None:
        self.mass = check_number("mass", mass, low=0.0, high=1.0, strict=True)
        self.min_tokens_to_keep = _keep("min_tokens_to_keep", min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        if self.mass == 1.0:
            return scores
        log_p = torch.nn.functional.log_softmax(scores, dim=-1)
        entropy = -(log_p * torch.exp(log_p)).nansum(-1, keepdim=True)
        shifted, sorted_indices = torch.sort(torch.abs(-log_p - entropy), descending=False)
        cumulative = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=shifted.shape[-1] - 1)
        sorted_remove = shifted > shifted.gather(1, last.view(-1, 1))
        sorted_remove[..., : self.min_tokens_to_keep] = 0
        remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
        return scores.masked_fill(remove, -math.inf)


# ------------------------------------------------------------------------- penalties
class RepetitionPenalty:
    r"""The CTRL repetition penalty (Keskar et al. 2019): for every token already in
    ``input_ids``, :math:`z_i \mapsto z_i/\theta` if :math:`z_i \ge 0`, else
    :math:`z_i\theta`. ``penalty`` :math:`\theta > 1` discourages repeats, ``< 1`` favours
    them; a token counts once however often it occurred."""

    def __init__(self, penalty: float) -> None:
        self.penalty = check_number("penalty", penalty, low=0.0, strict=True)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(_presence(input_ids, scores.shape[1]), penalised, scores)


class FrequencyPresencePenalty:
    r"""The OpenAI penalties: :math:`z_i - \alpha_f\, c_i - \alpha_p\,[c_i > 0]`, where
    :math:`c_i` is how often token :math:`i` occurs in ``input_ids``.

    ``frequency`` grows with each repeat, ``presence`` is paid once; both must be ``>= 0``.
    """

    def __init__(self, frequency: float = 0.0, presence: float = 0.0) -> None:
        self.frequency = check_number("frequency", frequency, low=0.0)
        self.presence = check_number("presence", presence, low=0.0)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        counts = torch.zeros_like(scores).scatter_add_(
            1, input_ids, torch.ones_like(input_ids, dtype=scores.dtype)
        )
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class NoRepeatNGram:
    r"""Ban every token that would repeat an n-gram of ``input_ids``: if the last
    :math:`n-1` tokens occurred before, followed by token :math:`j`, then :math:`z_j = -\infty`.

    Vectorised over all windows of length ``ngram_size`` at once (no loop over tokens).
    """

    def __init__(self, ngram_size: int) -> None:
        self.ngram_size = check_int("ngram_size", ngram_size, 1)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        n, t, V = self.ngram_size, input_ids.shape[1], scores.shape[1]
        if t < n:
            return scores
        prefix = input_ids[:, t + 1 - n :]  # the last n-1 tokens
        windows = input_ids.unfold(1, n, 1)  # (B, t-n+1, n)
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        banned = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(matches, windows[..., -1], V), True)  # V: a spare column
        return scores.masked_fill(banned[:, :V], -math.inf)


# ----------------------------------------------------------------------- composition
class ProcessorList:
    """Processors applied in order: ``ProcessorList([p1, p2])(ids, z) == p2(ids, p1(ids, z))``.

    An empty list returns the scores unchanged.
    """

    def __init__(self, processors: Iterable[Processor] = ()) -> None:
        if isinstance(processors, str | bytes) or not isinstance(processors, Iterable):
            raise ValueError(
                f"processors must be an iterable of processors, got {show(processors)}"
            )
        self.processors: tuple[Processor, ...] = tuple(processors)
        for i, p in enumerate(self.processors):
            if not callable(p):
                raise ValueError(
                    f"processors[{i}] must be callable as p(input_ids, scores), got {show(p)}"
                )

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        input_ids, scores = _check_inputs(input_ids, scores)
        for p in self.processors:
            scores = p(input_ids, scores)
        return scores

    def __len__(self) -> int:
        return len(self.processors)

    def __iter__(self) -> Iterator[Processor]:
        return iter(self.processors)

    def __repr__(self) -> str:
        return f"ProcessorList({list(self.processors)!r})"


def compose(*processors: Processor) -> ProcessorList:
    """The processors applied left to right, as one processor (a :class:`ProcessorList`)."""
    return ProcessorList(processors)


# ------------------------------------------------------------------- the next token
def probabilities(scores: Tensor) -> Tensor:
    r"""The distribution :func:`sample_next` draws from: :math:`\operatorname{softmax}(z)`
    per row, in float32 or float64 (lower precisions are upcast to float32)."""
    scores = _check_scores(scores)
    if scores.shape[1] == 0 or not bool(torch.isfinite(scores).any(dim=-1).all()):
        raise ValueError("scores must have at least one finite score per row (all are masked)")
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    return torch.softmax(scores, dim=-1)


def sample_next(scores: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""One token per row, :math:`x \sim \operatorname{softmax}(z)`: ``(B, 1)`` int64 ids,
    ready to append to ``input_ids``. Pass a seeded ``generator`` for reproducible draws."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {show(generator)}")
    return torch.multinomial(probabilities(scores), 1, generator=generator)


def greedy_next(scores: Tensor) -> Tensor:
    r"""The most likely token per row, :math:`\arg\max_i z_i` (the first among ties):
    ``(B, 1)`` int64 ids. This is decoding at temperature 0."""
    scores = _check_scores(scores)
    if scores.shape[1] == 0:
        raise ValueError("scores must have at least one column (V >= 1)")
    return scores.argmax(dim=-1, keepdim=True)


def repeated_ngram_rate(ids: Tensor, n: int = 4) -> Tensor:
    r"""The share of repeated n-grams in each row of ``ids`` ``(B, T)``, a measure of
    degenerate repetition (Welleck et al. 2020's *seq-rep-n*, Chapter 12):

    .. math:: \text{rep}_n = 1 - \frac{|\text{distinct n-grams}|}{|\text{n-grams}|}.

    0 when no n-gram occurs twice, close to 1 for a loop. Returns ``(B,)`` float64.
    """
    ids = check_int_ids("ids", ids, ndim=2)
    n = check_int("n", n, 1)
    if ids.shape[1] < n:
        raise ValueError(f"ids must have at least n={n} tokens per row, got T={ids.shape[1]}")
    grams = ids.unfold(1, n, 1)  # (B, T-n+1, n)
    distinct = [torch.unique(row, dim=0).shape[0] for row in grams]
    return 1.0 - torch.tensor(distinct, dtype=torch.float64) / grams.shape[1]


# ------------------------------------------------------------------- generation loops
def _check_model(model: object) -> GPT:
    return check_type("model", model, GPT, "an llmbook.gpt.GPT")


def _check_prompt(model: GPT, input_ids: object) -> Tensor:
    """``input_ids`` (B, T) with 1 <= T <= block_size, ids < V, on the model's device."""
    ids = check_int_ids("input_ids", input_ids, ndim=2, high=model.config.vocab_size)
    T, L = ids.shape[1], model.config.block_size
    if T == 0:
        raise ValueError("input_ids must hold a prompt of at least one token, got T=0")
    if T > L:
        raise ValueError(f"input_ids has T={T} tokens, more than the context length block_size={L}")
    if ids.shape[0] == 0:
        raise ValueError("input_ids must hold at least one row, got B=0")
    return ids.to(model.wte.weight.device)


def _check_processors(processors: object) -> ProcessorList:
    if processors is None:
        return ProcessorList()
    if isinstance(processors, ProcessorList):
        return processors
    if callable(processors):
        return ProcessorList([processors])  # type: ignore[list-item]
    return ProcessorList(processors)  # type: ignore[arg-type]


def _check_token(name: str, value: object, V: int) -> int | None:
    return None if value is None else check_int(name, value, 0, V - 1)


def _next_logits(model: GPT, step_in: Tensor, caches: list[KVCache] | None) -> Tensor:
    """The last position's logits in float32, as ``transformers`` casts them."""
    return model._logits(step_in, caches, last_only=True)[:, -1].to(torch.float32)


@torch.no_grad()
def generate(
    model: GPT,
    input_ids: Tensor,
    max_new_tokens: int,
    processors: Processor | Iterable[Processor] | None = None,
    *,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    r"""Autoregressive decoding with the model's KV cache (Chapter 12): append up to
    ``max_new_tokens`` tokens to each prompt row of ``input_ids`` ``(B, T)``.

    Each step takes the last position's logits :math:`z` (in float32), applies the
    ``processors`` (one, a list, or a :class:`ProcessorList`) with everything generated so
    far, :math:`z' = \text{processors}(x_{\le t}, z)`, and picks
    :math:`x_{t+1} = \arg\max z'` (``greedy``) or draws
    :math:`x_{t+1} \sim \operatorname{softmax}(z')` with :func:`sample_next` from
    ``generator`` (``None``: torch's global generator). A row that emits ``eos_token_id``
    is finished: it is padded with ``pad_token_id`` (default ``eos_token_id``) and the loop
    stops when every row is finished. These are the steps of ``transformers``'
    ``generate`` (``_sample``), which draws with the same ``torch.multinomial``: seeded
    alike, both return the same tokens.

    The prompt must fit the context (``T <= block_size``); once the sequence outgrows it,
    the window slides as in :meth:`llmbook.gpt.GPT.generate` (the cache is dropped and the
    last ``block_size`` tokens recomputed each step). Call ``model.eval()`` first when the
    model has dropout.

    Returns:
        ``(B, T + n)`` int64 ids, ``n <= max_new_tokens``.
    """
    model = _check_model(model)
    ids = _check_prompt(model, input_ids)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 0)
    procs = _check_processors(processors)
    greedy = check_bool("greedy", greedy)
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    V, L = model.config.vocab_size, model.config.block_size
    eos = _check_token("eos_token_id", eos_token_id, V)
    pad = _check_token("pad_token_id", pad_token_id, V)
    pad = eos if pad is None else pad
    caches: list[KVCache] | None = [KVCache(L) for _ in model.blocks]
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    step_in = ids
    for _ in range(max_new_tokens):
        if caches is not None and caches[0].length + step_in.shape[1] > L:
            caches, step_in = None, ids[:, -L:]  # the window slides: recompute it
        scores = procs(ids, _next_logits(model, step_in, caches))
        nxt = greedy_next(scores) if greedy else sample_next(scores, generator)
        if eos is not None:
            nxt = torch.where(unfinished[:, None], nxt, pad)
            unfinished &= nxt[:, 0] != eos
        ids = torch.cat((ids, nxt), dim=1)
        if not bool(unfinished.any()):
            break
        step_in = nxt if caches is not None else ids[:, -L:]
    return ids


@dataclass
class BeamSearchOutput:
    """What :func:`beam_search` returns.

    Attributes:
        sequences: ``(B * num_return_sequences, T + n)`` int64, each prompt's best
            hypotheses, best first; shorter ones (ended by ``eos_token_id``) are padded.
        scores: ``(B * num_return_sequences,)`` float32, each hypothesis's
            length-penalised score :math:`\\log p(y \\mid x) / n_y^{\\alpha}`.
        lengths: ``(B * num_return_sequences,)`` int64, the number of generated tokens
            :math:`n_y` of each (eos included).
    """

    sequences: Tensor
    scores: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        check_int_ids("sequences", self.sequences, ndim=2)
        n = self.sequences.shape[0]
        self.scores = check_float_tensor("scores", self.scores, ndim=1, shape="(n,)")
        self.lengths = check_int_ids("lengths", self.lengths, ndim=1)
        if self.scores.shape[0] != n or self.lengths.shape[0] != n:
            raise ValueError(
                f"scores and lengths must have one entry per sequence ({n}), got "
                f"{self.scores.shape[0]} and {self.lengths.shape[0]}"
            )


_EARLY = (True, False, "never")
_NEG = -1.0e9  # the score of a slot that must not be chosen, as in transformers


def _check_beam_args(
    model: GPT,
    T: int,
    max_new_tokens: object,
    num_beams: object,
    length_penalty: object,
    early_stopping: object,
    num_return_sequences: object,
) -> tuple[int, int, float, bool | str, int]:
    n = check_int("max_new_tokens", max_new_tokens, 1)
    if T + n > model.config.block_size:
        raise ValueError(
            f"max_new_tokens={n} with a prompt of T={T} tokens exceeds the context length "
            f"block_size={model.config.block_size}: beam search needs T + max_new_tokens "
            "<= block_size"
        )
    K = check_int("num_beams", num_beams, 1)
    alpha = check_number("length_penalty", length_penalty)
    if isinstance(early_stopping, str):
        if early_stopping != "never":
            raise ValueError(
                f"early_stopping must be True, False or 'never', got {early_stopping!r}"
            )
        stop: bool | str = "never"
    else:
        stop = check_bool("early_stopping", early_stopping)
    n_ret = check_int("num_return_sequences", num_return_sequences, 1, K)
    return n, K, alpha, stop, n_ret


@torch.no_grad()
def beam_search(
    model: GPT,
    input_ids: Tensor,
    max_new_tokens: int,
    num_beams: int,
    *,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    num_return_sequences: int = 1,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    processors: Processor | Iterable[Processor] | None = None,
) -> BeamSearchOutput:
    r"""Beam search over the model with its KV cache (Chapter 12).

    Keeps the ``num_beams`` :math:`K` best unfinished hypotheses per prompt. Each step
    scores every one-token extension of every beam by its log-probability
    :math:`\log p(y_{\le t} \mid x) = \sum_s \log p(y_s \mid x, y_{<s})` (the per-step
    log-softmax goes through the ``processors``), takes the best :math:`2K`
    extensions, moves those ending in ``eos_token_id`` (among the first :math:`K`) to the
    finished list with the score :math:`\log p(y \mid x) / n_y^{\alpha}` (:math:`n_y`
    generated tokens, :math:`\alpha` = ``length_penalty``), and continues the :math:`K`
    best others; the cache rows follow their beams
    (:meth:`~llmbook.attention.KVCache.reorder`). At
    ``max_new_tokens`` every surviving beam is finished.

    The finished list keeps the :math:`K` best. ``early_stopping`` decides when to stop
    before ``max_new_tokens``: ``True`` as soon as :math:`K` hypotheses are finished;
    ``False`` when moreover the best running beam, scored at its current length, cannot
    beat the worst finished one; ``"never"`` the same test with the most favourable
    length (``max_new_tokens`` when :math:`\alpha > 0`). These are the rules and the
    arithmetic (float32 scores, :math:`-10^9` for the beams that start as copies of the
    prompt) of ``transformers``' ``_beam_search`` (its ``_get_top_k_continuations``,
    ``_update_finished_beams`` and ``_check_early_stop_heuristic``), so the sequences and
    scores are equal to ``generate(num_beams=K, do_sample=False)``'s (tested).

    ``num_beams=1`` is a beam of one, which may differ from greedy decoding once an end
    token is involved (a finished hypothesis does not stop the search);
    ``transformers`` runs greedy decoding for ``num_beams=1`` instead. Without an end token
    the two agree.

    Returns:
        a :class:`BeamSearchOutput`: the ``num_return_sequences`` best finished hypotheses
        of each prompt, best first, with their scores.
    """
    model = _check_model(model)
    ids = _check_prompt(model, input_ids)
    B, T = ids.shape
    n_max, K, alpha, stop, n_ret = _check_beam_args(
        model,
        T,
        max_new_tokens,
        num_beams,
        length_penalty,
        early_stopping,
        num_return_sequences,
    )
    procs = _check_processors(processors)
    V = model.config.vocab_size
    eos = _check_token("eos_token_id", eos_token_id, V)
    pad = _check_token("pad_token_id", pad_token_id, V)
    fill = pad if pad is not None else (eos if eos is not None else 0)
    dev, max_len, K2 = ids.device, T + n_max, 2 * K  # 2K: at least K extensions go on
    rows = torch.arange(B, device=dev)[:, None]

    caches = [KVCache(max_len) for _ in model.blocks]
    logits = _next_logits(model, ids, caches)  # the prompt once, then K copies of it
    copies = torch.arange(B, device=dev).repeat_interleave(K)
    for cache in caches:
        cache.reorder(copies)
    logits, seqs = logits[copies], ids[copies]  # running beams (B*K, t)
    running = torch.zeros(B, K, device=dev)
    running[:, 1:] = _NEG  # the copies: only the first beam may extend at step one
    done_seqs = torch.full((B, K, max_len), fill, dtype=torch.long, device=dev)
    done_scores = torch.full((B, K), _NEG, device=dev)
    done_lens = torch.zeros(B, K, dtype=torch.long, device=dev)
    is_done = torch.zeros(B, K, dtype=torch.bool, device=dev)
    improvable = torch.ones(B, dtype=torch.bool, device=dev)
    first_k = torch.arange(K2, device=dev) < K
    for step in range(n_max):
        t = seqs.shape[1]
        if step > 0:
            logits = _next_logits(model, seqs[:, -1:], caches)
        logp = procs(seqs, F.log_softmax(logits, dim=-1))
        total = (logp.view(B, K, V) + running[:, :, None]).view(B, K * V)
        top, idx = torch.topk(total, K2)  # (B, 2K), best first
        parent = idx // V + rows * K  # rows of seqs
        cand = torch.cat((seqs[parent.view(-1)], (idx % V).view(-1, 1)), 1).view(B, K2, t + 1)
        ends = idx % V == eos if eos is not None else torch.zeros_like(idx, dtype=torch.bool)
        ends = ends | (t + 1 >= max_len)  # at max_new_tokens every extension ends
        # the K best extensions that go on
        alive = top + ends.to(torch.float32) * _NEG
        keep = torch.topk(alive, K)[1]
        running = alive.gather(1, keep)
        chosen = parent.gather(1, keep).view(-1)
        seqs = cand[rows, keep].view(B * K, t + 1)
        # the finished list: the K best of the old and the just-finished hypotheses
        new = top / ((t + 1 - T) ** alpha)
        new += (is_done.all(-1, keepdim=True) & (stop is True)).to(torch.float32) * _NEG
        new += (~improvable[:, None]).to(torch.float32) * _NEG
        just = ends & first_k[None]
        new += (~just) * _NEG
        padded = F.pad(cand, (0, max_len - t - 1), value=fill)
        merged = torch.topk(torch.cat((done_scores, new), 1), K)[1]
        done_scores = torch.cat((done_scores, new), 1).gather(1, merged)
        done_seqs = torch.cat((done_seqs, padded), 1)[rows, merged]
        new_lens = torch.full((B, K2), t + 1 - T, dtype=torch.long, device=dev)
        done_lens = torch.cat((done_lens, new_lens), 1).gather(1, merged)
        is_done = torch.cat((is_done, just), 1).gather(1, merged)
        # may a running beam still beat the worst finished one?
        n_best = n_max if (stop == "never" and alpha > 0) else t + 1 - T
        best = running[:, 0] / (n_best**alpha)
        worst = torch.where(is_done, done_scores.min(1, keepdim=True)[0], _NEG)
        improvable = improvable & (best[:, None] > worst).any(1)
        if not bool(improvable.any()) or bool(ends.all()):
            break
        if bool(is_done.all()) and stop is True:
            break
        for cache in caches:
            cache.reorder(chosen)
    lengths = done_lens[:, :n_ret].reshape(-1)
    width = T + int(lengths.max())
    return BeamSearchOutput(
        sequences=done_seqs[:, :n_ret, :width].reshape(B * n_ret, width),
        scores=done_scores[:, :n_ret].reshape(-1),
        lengths=lengths,
    )


__all__ = [
    "BeamSearchOutput",
    "FrequencyPresencePenalty",
    "MinP",
    "NoRepeatNGram",
    "Processor",
    "ProcessorList",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "Typical",
    "beam_search",
    "compose",
    "generate",
    "greedy_next",
    "probabilities",
    "repeated_ngram_rate",
    "sample_next",
]
