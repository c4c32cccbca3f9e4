r"""A reward a reader can see, built from the corpus: how much a line sounds like comedy
(Chapters 16 and 17).

Alignment needs a reward, and the book's is programmatic and stated in full rather than
learned from human labels. Every lower-case word :math:`w` of the training plays gets a
**genre score**, the smoothed log-odds of the word in the comedies against the tragedies,

.. math::

    s(w) = \log \frac{c_{\text{com}}(w) + a}{N_{\text{com}} + a |W|}
         - \log \frac{c_{\text{tra}}(w) + a}{N_{\text{tra}} + a |W|},

where :math:`c_g(w)` counts the word in genre :math:`g`, :math:`N_g` is the genre's word
count, :math:`|W|` the number of distinct words and :math:`a` a pseudo-count
(:func:`genre_lexicon`). Only words seen at least ``min_count`` times enter the lexicon,
and only words that are mostly written in lower case (names of characters, capitalised,
would otherwise top both lists). The reward of a text is the mean score of its words,
words outside the lexicon counting zero (:class:`LexiconReward`):

.. math::

    r(y) = \frac{1}{\max(1, n_y)} \sum_{i=1}^{n_y} s(w_i).

Positive means comic, negative tragic. The reward is easy to read and easy to game: a
policy that repeats the single most comic word scores the maximum, which is what
reinforcement learning without a KL penalty finds (Chapter 16).

:func:`task_prompts` draws the prompts of the alignment task: the first tokens of lines of
the plays. :func:`sample_responses` draws a policy's responses to them, and
:func:`evaluate_policy` measures what alignment trades off: the mean reward of the
policy's samples against their KL divergence from the reference model,

.. math::

    \operatorname{KL}(\pi \,\|\, \pi_{\text{ref}})
    = \mathbb E_{x,\, y \sim \pi}
      \Big[\sum_t \log \pi(y_t \mid x, y_{<t}) - \log \pi_{\text{ref}}(y_t \mid x, y_{<t})\Big],

estimated by the mean of the bracket over the samples (unbiased; nats per response).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from llmbook._validate import check_choice, check_int, check_number, check_type
from llmbook.alignment import sequence_logprobs
from llmbook.corpus import SPLITS, play_paths, play_text, split_plays
from llmbook.decoding import Temperature, generate
from llmbook.gpt import GPT
from llmbook.tokenizer import BPETokenizer

#: The task's prompt length and response length, in tokens (Chapters 16-17).
PROMPT_TOKENS = 8
RESPONSE_TOKENS = 24
#: The genres of the plays, the names of the corpus's folders.
GENRES: tuple[str, ...] = ("comedies", "histories", "problems", "romances", "roman", "tragedies")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def play_genre(name: str) -> str:
    """The genre of a play (one of :data:`GENRES`), by slug, e.g. ``"comedies"``."""
    paths = play_paths()
    if not isinstance(name, str) or name not in paths:
        raise ValueError(f"name must name a play, got {name!r}; known: {', '.join(paths)}")
    return paths[name].parent.name


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased (letters, with an inner apostrophe: ``"is't"``)."""
    check_type("text", text, str, "a str")
    return [w.lower() for w in _WORD.findall(text)]


def _speech_lines(text: str) -> list[str]:
    """The lines of a play's text without its speaker lines (``"NAME:"``)."""
    return [ln for ln in text.split("\n") if ln and not ln.endswith(":")]


@cache
def _genre_counts(split: str) -> dict[str, tuple[Counter[str], Counter[str]]]:
    """Per genre: (counts of every word lower-cased, counts of its lower-case occurrences)."""
    out: dict[str, tuple[Counter[str], Counter[str]]] = {g: (Counter(), Counter()) for g in GENRES}
    for name in split_plays(split):
        every, lower = out[play_genre(name)]
        for line in _speech_lines(play_text(name)):
            for w in _WORD.findall(line):
                every[w.lower()] += 1
                if w.islower():
                    lower[w] += 1
    return out


def genre_lexicon(
    positive: str = "comedies",
    negative: str = "tragedies",
    *,
    split: str = "train",
    min_count: int = 50,
    pseudo_count: float = 1.0,
) -> dict[str, float]:
    """The smoothed log-odds :math:`s(w)` of each word in ``positive`` against ``negative``
    (Chapter 16).

    Counts come from the speeches (speaker lines excluded) of the ``split``'s plays of the
    two genres. A word enters when it occurs at least ``min_count`` times in the two
    genres together and at least half of its occurrences are in lower case (so the names
    of characters stay out). Returns ``{word: score}`` sorted by score, most positive first.
    """
    check_choice("positive", positive, GENRES)
    check_choice("negative", negative, GENRES)
    if positive == negative:
        raise ValueError(f"positive and negative must differ, got {positive!r} twice")
    check_choice("split", split, SPLITS)
    min_count = check_int("min_count", min_count, 1)
    a = check_number("pseudo_count", pseudo_count, low=0.0, strict=True)
    counts = _genre_counts(split)
    (pos, pos_lower), (neg, neg_lower) = counts[positive], counts[negative]
    if not pos or not neg:
        raise ValueError(f"split {split!r} has no plays of both {positive!r} and {negative!r}")
    vocab = set(pos) | set(neg)
    n_pos, n_neg = sum(pos.values()), sum(neg.values())
    lexicon = {}
    for w in vocab:
        total = pos[w] + neg[w]
        if total >= min_count and 2 * (pos_lower[w] + neg_lower[w]) >= total:
            lexicon[w] = math.log((pos[w] + a) / (n_pos + a * len(vocab))) - math.log(
                (neg[w] + a) / (n_neg + a * len(vocab))
            )
    return dict(sorted(lexicon.items(), key=lambda kv: (-kv[1], kv[0])))


class LexiconReward:
    """The reward :math:`r(y)`: the mean lexicon score of a text's words (Chapter 16).

    Words outside the lexicon score 0; a text without words scores 0. Calling it on a
    list of texts returns a float64 tensor of their rewards.

    Parameters
    ----------
    lexicon:
        ``{word: score}``, e.g. :func:`genre_lexicon`; lower-case words, finite scores.
    """

    def __init__(self, lexicon: dict[str, float]) -> None:
        if not isinstance(lexicon, dict) or not lexicon:
            raise ValueError(
                f"lexicon must be a non-empty dict of word -> score, got {lexicon!r:.60}"
            )
        for w, s in lexicon.items():
            if not isinstance(w, str) or w != w.lower() or not w:
                raise ValueError(f"lexicon words must be non-empty lower-case str, got {w!r}")
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise ValueError(f"lexicon scores must be finite numbers, got {s!r} for {w!r}")
        self.lexicon = {w: float(s) for w, s in lexicon.items()}

    @property
    def best_word(self) -> str:
        """The highest-scoring word, which a reward hacker repeats."""
        return max(self.lexicon, key=lambda w: (self.lexicon[w], w))

    @property
    def max_reward(self) -> float:
        """The highest reward a text can get, the best word's score."""
        return self.lexicon[self.best_word]

    def score(self, text: str) -> float:
        """:math:`r(y)` of one text."""
        ws = words(text)
        return sum(self.lexicon.get(w, 0.0) for w in ws) / max(1, len(ws))

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """The rewards of ``texts`` as a float64 tensor of shape ``(len(texts),)``."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
        for t in texts:
            check_type("texts[i]", t, str, "a str")
        return torch.tensor([self.score(t) for t in texts], dtype=torch.float64)


def task_prompts(
    tokenizer: BPETokenizer,
    n: int,
    length: int,
    *,
    split: str = "train",
    seed: int = 0,
) -> Tensor:
    """``n`` prompts of ``length`` tokens each: the beginnings of distinct speech lines of
    the ``split``'s plays, drawn without replacement with ``seed`` (Chapter 16).

    Each prompt is the tokenization of a line and what follows it, cut to ``length``
    tokens, so every prompt starts where a line starts. Returns an int64 tensor of shape
    ``(n, length)``.
    """
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    n, length = check_int("n", n, 1), check_int("length", length, 1)
    check_choice("split", split, SPLITS)
    seed = check_int("seed", seed, 0)
    text = "\n".join(play_text(name) for name in split_plays(split))
    starts = [m.end() for m in re.finditer(r"\n(?=[A-Za-z])", text)]
    starts = [s for s in starts if not text[s : text.find("\n", s)].endswith(":")]
    if n > len(starts):
        raise ValueError(f"n must be at most {len(starts)} (lines of split {split!r}), got {n}")
    rng = np.random.default_rng(seed)
    rows = []
    for s in rng.choice(len(starts), size=n, replace=False):
        ids = tokenizer.encode(text[starts[s] : starts[s] + 8 * length])
        if len(ids) < length:
            raise ValueError(f"length must be at most {len(ids)} here, got {length}")
        rows.append(ids[:length])
    return torch.tensor(rows, dtype=torch.int64)


def sample_responses(
    policy: GPT,
    prompts: Tensor,
    n_new: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample ``n_new`` tokens after each prompt row, ``(ids, response_mask)`` (Chapter 16).

    ``ids`` is ``(B, P + n_new)`` (prompt, then response) and ``response_mask`` its 0/1
    float mask, 1 on the response: the inputs of :func:`llmbook.alignment.token_logprobs`.
    Sampling uses :func:`llmbook.decoding.generate` without an end-of-sequence token, so
    every response has exactly ``n_new`` tokens; the policy is put in eval mode.
    """
    check_type("policy", policy, GPT, "an llmbook.gpt.GPT")
    check_type("prompts", prompts, Tensor, "a (B, P) int64 tensor")
    if prompts.ndim != 2 or prompts.dtype != torch.int64 or prompts.shape[1] < 1:
        raise ValueError(f"prompts must be a (B, P) int64 tensor with P >= 1, got {prompts.shape}")
    n_new = check_int("n_new", n_new, 1)
    if prompts.shape[1] + n_new > policy.config.block_size:
        raise ValueError(
            f"n_new must fit the context: P + n_new <= {policy.config.block_size}, "
            f"got {prompts.shape[1]} + {n_new}"
        )
    temperature = check_number("temperature", temperature, low=0.0, strict=True)
    policy.eval()
    with torch.no_grad():
        ids = generate(policy, prompts, n_new, Temperature(temperature), generator=generator)
    mask = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    mask[:, prompts.shape[1] :] = 1.0
    return ids, mask


@dataclass(frozen=True)
class PolicyScore:
    """What :func:`evaluate_policy` measured: the mean reward and KL with their standard
    errors, over ``len(texts)`` sampled responses, and the responses themselves."""

    reward: float
    reward_sem: float
    kl: float
    kl_sem: float
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("reward", "reward_sem", "kl", "kl_sem"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not isinstance(self.texts, tuple) or not all(isinstance(t, str) for t in self.texts):
            raise ValueError(f"texts must be a tuple of str, got {type(self.texts).__name__}")


def _mean_sem(x: Tensor) -> tuple[float, float]:
    x = x.double()
    sem = x.std(unbiased=True).item() / math.sqrt(len(x)) if len(x) > 1 else float("nan")
    return x.mean().item(), sem


def evaluate_policy(
    policy: GPT,
    reference: GPT,
    tokenizer: BPETokenizer,
    reward: LexiconReward,
    prompts: Tensor,
    n_new: int,
    *,
    seed: int = 0,
) -> PolicyScore:
    """The mean reward of ``policy``'s responses to ``prompts`` and its KL from
    ``reference`` (nats per response, the unbiased estimate above), Chapters 16-17.

    One response of ``n_new`` tokens is sampled per prompt at temperature 1 with a
    generator seeded by ``seed``; the reward scores the decoded response only.
    """
    check_type("reference", reference, GPT, "an llmbook.gpt.GPT")
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    check_type("reward", reward, LexiconReward, "a LexiconReward")
    if reference.config.vocab_size != getattr(getattr(policy, "config", None), "vocab_size", None):
        raise ValueError("reference must have the policy's vocabulary (vocab_size differs)")
    seed = check_int("seed", seed, 0)
    gen = torch.Generator(device=prompts.device if isinstance(prompts, Tensor) else "cpu")
    ids, mask = sample_responses(policy, prompts, n_new, generator=gen.manual_seed(seed))
    reference.eval()
    with torch.no_grad():
        logp = sequence_logprobs(policy(ids)[0].float(), ids, mask)
        logp_ref = sequence_logprobs(reference(ids)[0].float(), ids, mask)
    P = prompts.shape[1]
    texts = tuple(tokenizer.decode(row[P:].tolist()) for row in ids)
    r_mean, r_sem = _mean_sem(reward(list(texts)))
    kl_mean, kl_sem = _mean_sem(logp - logp_ref)
    return PolicyScore(r_mean, r_sem, kl_mean, kl_sem, texts)


@dataclass(frozen=True)
class Preferences:
    """Pairs of responses to the same prompts, one preferred (Chapters 16-17).

    ``chosen`` and ``rejected`` are ``(N, P + n)`` ids (prompt, then response),
    ``response_mask`` their 0/1 float mask (1 on the response), ``reward_chosen`` and
    ``reward_rejected`` the float64 rewards of the responses (what the labels came from).
    """

    chosen: Tensor
    rejected: Tensor
    response_mask: Tensor
    reward_chosen: Tensor
    reward_rejected: Tensor

    def __post_init__(self) -> None:
        for name in ("chosen", "rejected", "response_mask"):
            check_type(name, getattr(self, name), Tensor, "a tensor")
        if not (self.chosen.shape == self.rejected.shape == self.response_mask.shape):
            raise ValueError(
                f"chosen, rejected and response_mask must have one shape, got "
                f"{tuple(self.chosen.shape)}, {tuple(self.rejected.shape)}, "
                f"{tuple(self.response_mask.shape)}"
            )
        for name in ("reward_chosen", "reward_rejected"):
            value = check_type(name, getattr(self, name), Tensor, "a tensor")
            if value.shape != self.chosen.shape[:1]:
                raise ValueError(f"{name} must have shape ({len(self.chosen)},), got {value.shape}")

    def __len__(self) -> int:
        return len(self.chosen)


def preference_pairs(
    policy: GPT,
    tokenizer: BPETokenizer,
    reward: LexiconReward,
    prompts: Tensor,
    n_new: int,
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> Preferences:
    r"""Two sampled responses per prompt, labelled by the known reward (Chapters 16-17).

    With ``noise`` :math:`=0` the response with the higher reward is chosen and pairs with
    equal rewards are dropped. With ``noise`` :math:`=\tau>0` the labels follow the
    Bradley-Terry model of the reward,

    .. math:: P(a \succ b) = \sigma\big((r(a) - r(b)) / \tau\big),

    drawn with a generator seeded by ``seed`` (which also seeds the sampling).
    """
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    check_type("reward", reward, LexiconReward, "a LexiconReward")
    noise = check_number("noise", noise, low=0.0)
    seed = check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(prompts, Tensor) and prompts.ndim == 2:
        prompts = prompts.repeat_interleave(2, dim=0)
    ids, mask = sample_responses(policy, prompts, n_new, generator=gen)
    P = ids.shape[1] - n_new
    r = reward([tokenizer.decode(row[P:].tolist()) for row in ids.cpu()])
    a, b, ra, rb = ids[0::2], ids[1::2], r[0::2], r[1::2]
    if noise == 0.0:
        keep, a_wins = ra != rb, ra > rb
    else:
        keep = torch.ones_like(ra, dtype=torch.bool)
        a_wins = torch.rand(len(ra), generator=gen, dtype=torch.float64) < torch.sigmoid(
            (ra - rb) / noise
        )
    w = a_wins.to(ids.device)[:, None]
    chosen, rejected = torch.where(w, a, b), torch.where(w, b, a)
    r_c, r_r = torch.where(a_wins, ra, rb), torch.where(a_wins, rb, ra)
    k = keep.to(ids.device)
    return Preferences(chosen[k], rejected[k], mask[0::2][k], r_c[keep], r_r[keep])


__all__ = [
    "GENRES",
    "PROMPT_TOKENS",
    "RESPONSE_TOKENS",
    "LexiconReward",
    "PolicyScore",
    "Preferences",
    "evaluate_policy",
    "genre_lexicon",
    "play_genre",
    "preference_pairs",
    "sample_responses",
    "task_prompts",
    "words",
]
