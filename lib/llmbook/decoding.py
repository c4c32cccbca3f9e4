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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from llmbook._validate import check_float_tensor, check_int, check_int_ids, check_number, show
from llmbook.gpt import MIN_TEMPERATURE

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


__all__ = [
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
    "compose",
    "greedy_next",
    "probabilities",
    "sample_next",
]
