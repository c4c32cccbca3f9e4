r"""An n-gram language model over characters or words (Chapter 1).

The model predicts token :math:`x_t` from the previous :math:`n-1` tokens,
:math:`p(x_t\mid x_{t-n+1:t-1})`, estimated from counts (the maximum-likelihood estimate
is the relative frequency :math:`c(h\,w)/c(h)`), with one of two smoothing rules:

``"add_k"`` (Lidstone; ``k=1`` is Laplace, ``k=0`` the unsmoothed MLE)
    :math:`p(w\mid h) = \dfrac{c(h\,w) + k}{c(h) + kV}`; a context never seen in training
    gets the uniform distribution :math:`1/V` (the limit of the formula as counts vanish).

``"kneser_ney"`` (interpolated Kneser–Ney, Chen & Goodman 1999)
    :math:`p(w\mid h) = \dfrac{\max(c(h\,w) - D, 0)}{c(h)} + \dfrac{D\,N_{1+}(h\,\bullet)}{c(h)}\,
    p(w\mid h')`, where :math:`h'` drops the oldest token of :math:`h`, :math:`N_{1+}(h\,\bullet)`
    is the number of distinct tokens seen after :math:`h`, and :math:`D = n_1/(n_1+2n_2)` is
    estimated per order from the counts-of-counts (clipped to :math:`[0.1, 1]`). The top
    order uses raw counts; lower orders use *continuation counts*
    :math:`N_{1+}(\bullet\,h\,w)`, the number of distinct tokens seen before :math:`h\,w`.
    The recursion ends in the uniform distribution, so every probability is positive.
    A context never seen passes its whole mass to the lower order.

Each position is scored by the longest context it has: the first :math:`n-1` tokens of a
text use the lower orders. Every conditional distribution sums to one (tested).

Counts are stored as sorted NumPy arrays of n-gram ids (an n-gram is a number in base
:math:`V`), so training on the 4.3-million-character Shakespeare split takes seconds and
scoring is vectorised; nothing loops over tokens except :meth:`NGramModel.sample`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from llmbook._validate import check_choice, check_int, check_number, is_int, show

SMOOTHING = ("add_k", "kneser_ney")


@dataclass(frozen=True)
class _Table:
    """Counts of m-grams and, per context, their total and number of distinct followers."""

    keys: np.ndarray  # sorted m-gram ids
    counts: np.ndarray  # count (raw or continuation) of each m-gram
    ctx_keys: np.ndarray  # sorted (m-1)-gram context ids
    ctx_total: np.ndarray  # sum of counts over followers of each context
    ctx_types: np.ndarray  # number of distinct followers of each context
    discount: float  # Kneser–Ney absolute discount D for this order


def _check_tokens(tokens: object, name: str = "tokens") -> None:
    if not isinstance(tokens, str | Sequence | np.ndarray):
        raise ValueError(f"{name} must be a string or a sequence of tokens, got {show(tokens)}")


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == query, else 0 (keys sorted)."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=values.dtype)
    idx = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(keys[idx] == query, values[idx], 0)


def _table(keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> _Table:
    ctx = keys // vocab_size
    starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]]) if ctx.size else np.array([], int)
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    discount = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    return _Table(
        keys=keys,
        counts=counts,
        ctx_keys=ctx[starts],
        ctx_total=np.add.reduceat(counts, starts) if starts.size else counts[:0],
        ctx_types=np.diff(np.r_[starts, ctx.size]),
        discount=float(np.clip(discount, 0.1, 1.0)),
    )


class NGramModel:
    r"""An n-gram language model with add-k or interpolated Kneser–Ney smoothing.

    Tokens are the characters of a string, or the items of a list (e.g. words). Fit with
    :meth:`fit`; score with :meth:`logprobs`, :meth:`logprob`, :meth:`cross_entropy`,
    :meth:`perplexity`; generate with :meth:`sample`.

    Args:
        n: order of the model (``n=1`` unigram, ``n=2`` bigram, …).
        smoothing: ``"add_k"`` or ``"kneser_ney"`` (see the module docstring).
        k: pseudo-count for ``"add_k"`` (``k >= 0``; ignored by Kneser–Ney).
        vocab: the token inventory. Defaults to the sorted set of training tokens; pass it
            to score held-out text that may contain tokens absent from training.
    """

    def __init__(
        self,
        n: int,
        *,
        smoothing: str = "kneser_ney",
        k: float = 1.0,
        vocab: Sequence[Hashable] | None = None,
    ) -> None:
        n = check_int("n", n, 1)
        check_choice("smoothing", smoothing, SMOOTHING)
        k = check_number("k", k, low=0.0)
        self.n, self.smoothing, self.k = n, smoothing, k
        self.vocab: list[Hashable] | None = None if vocab is None else list(vocab)
        if self.vocab is not None:
            if len(self.vocab) == 0:
                raise ValueError("vocab must not be empty")
            if len(set(self.vocab)) != len(self.vocab):
                raise ValueError("vocab must not contain duplicates")
        self._raw: list[_Table] = []
        self._cont: list[_Table] = []

    # ----------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        """:math:`V`, the number of distinct tokens the model predicts over."""
        self._check_fitted()
        return len(self.vocab)

    def encode(self, tokens: str | Sequence[Hashable]) -> np.ndarray:
        """Token ids of ``tokens``; unknown tokens raise ``ValueError`` naming them."""
        self._check_fitted()
        return self._encode(tokens)

    def _encode(self, tokens: str | Sequence[Hashable], name: str = "tokens") -> np.ndarray:
        _check_tokens(tokens, name)
        try:
            return np.fromiter((self._stoi[t] for t in tokens), dtype=np.int64, count=len(tokens))
        except KeyError:
            unknown = sorted({repr(t) for t in tokens if t not in self._stoi})
            raise ValueError(
                f"{name} contain symbols outside the model's vocabulary: "
                f"{', '.join(unknown[:10])}; pass vocab=... to the model to cover held-out symbols"
            ) from None

    def decode(self, ids: Sequence[int]) -> str | list[Hashable]:
        """Tokens for ``ids``: a string if the vocabulary is single characters, else a list."""
        self._check_fitted()
        V = len(self.vocab)
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
            raise ValueError(f"ids must be a sequence of integer ids, got {show(ids)}")
        bad = next((i for i in ids if not is_int(i) or not 0 <= i < V), None)
        if bad is not None:  # a negative id would silently index from the end
            raise ValueError(f"ids must be integers in [0, {V}), got {show(bad)}")
        toks = [self.vocab[int(i)] for i in ids]
        return "".join(toks) if self._chars else toks

    # ----------------------------------------------------------------- training
    def fit(self, tokens: str | Sequence[Hashable]) -> NGramModel:
        """Count every m-gram, m = 1…n, of ``tokens`` and build the smoothing tables."""
        _check_tokens(tokens)
        if len(tokens) == 0:
            raise ValueError("tokens is empty: an n-gram model needs training text")
        if self.vocab is None:
            self.vocab = sorted(set(tokens), key=lambda t: (str(type(t)), t))
        self._stoi = {t: i for i, t in enumerate(self.vocab)}
        self._chars = all(isinstance(t, str) and len(t) == 1 for t in self.vocab)
        V = len(self.vocab)
        if V**self.n >= 2**62:
            raise ValueError(f"n={self.n} is too large for V={V}: ids would overflow int64")
        x = self._encode(tokens)
        self._raw, self._cont = [], []
        window = x  # ids of all m-grams, by start position
        unique_by_order = []
        for m in range(1, self.n + 1):
            if m > 1:
                window = window[:-1] * V + x[m - 1 :]
            keys, counts = np.unique(window, return_counts=True)
            unique_by_order.append(keys)
            self._raw.append(_table(keys, counts, V))
        for m in range(1, self.n if self.smoothing == "kneser_ney" else 1):
            # continuation counts N1+(• g) of the m-grams, from the distinct (m+1)-grams
            keys, counts = np.unique(unique_by_order[m] % V**m, return_counts=True)
            self._cont.append(_table(keys, counts, V))
        self.n_train_tokens = len(tokens)
        return self

    def _check_fitted(self) -> None:
        if not self._raw:
            raise ValueError("the model is not fitted yet: call fit(tokens) first")

    # ----------------------------------------------------------------- scoring
    def prob(self, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        r"""Probabilities :math:`p(w\mid h)` for a batch of contexts and targets.

        Args:
            contexts: int array ``(N, n-1)`` of token ids, right-aligned: the last column is
                the token just before the target; ``-1`` marks positions before the start
                of the text (they must all be on the left).
            targets: int array ``(N,)`` or ``(N, K)`` of token ids to score.

        Returns:
            float array shaped like ``targets``.
        """
        self._check_fitted()
        V = len(self.vocab)
        contexts, targets = np.asarray(contexts), np.asarray(targets)
        for name, a in (("contexts", contexts), ("targets", targets)):
            if a.size and not np.issubdtype(a.dtype, np.integer):  # floats would be truncated
                raise ValueError(f"{name} must hold integer token ids, got dtype {a.dtype}")
        if contexts.ndim != 2 or contexts.shape[1] != self.n - 1:
            if not (self.n == 1 and contexts.ndim == 1):  # a unigram's (N,) empty contexts
                raise ValueError(
                    f"contexts must have shape (N, n-1) = (N, {self.n - 1}), got {contexts.shape}"
                )
        contexts = contexts.astype(np.int64).reshape(len(contexts), self.n - 1)
        targets = targets.astype(np.int64)
        if targets.ndim not in (1, 2) or targets.shape[0] != contexts.shape[0]:
            raise ValueError(
                f"targets must be (N,) or (N, K) with N = len(contexts) = {contexts.shape[0]}, "
                f"got shape {targets.shape}"
            )
        if ((targets < 0) | (targets >= V)).any() or (contexts >= V).any() or (contexts < -1).any():
            raise ValueError(f"token ids must lie in [0, {V}) (contexts may use -1 for padding)")
        squeeze = targets.ndim == 1
        w = targets[:, None] if squeeze else targets
        h = np.zeros((contexts.shape[0], 1), dtype=np.int64)  # empty context of order 1
        valid = np.ones_like(h, dtype=bool)
        base = np.full(w.shape, 1.0 / V)
        result = base
        for m in range(1, self.n + 1):
            if m > 1:
                col = contexts[:, self.n - m : self.n - m + 1]  # the token m-1 places back
                valid = valid & (col >= 0)
                h = np.where(valid, col * V ** (m - 2) + h, 0)
            g = h * V + w
            top = self._step(self._raw[m - 1], h, g, base, V)
            result = np.where(valid, top, result)
            if m < self.n and self.smoothing == "kneser_ney":
                base = np.where(valid, self._step(self._cont[m - 1], h, g, base, V), base)
        return result[:, 0] if squeeze else result

    def _step(
        self, t: _Table, h: np.ndarray, g: np.ndarray, lower: np.ndarray, V: int
    ) -> np.ndarray:
        count = _lookup(t.keys, t.counts, g).astype(np.float64)
        total = _lookup(t.ctx_keys, t.ctx_total, h).astype(np.float64)
        if self.smoothing == "add_k":
            denom = total + self.k * V
            safe = np.where(denom > 0, denom, 1.0)
            return np.where(denom > 0, (count + self.k) / safe, 1.0 / V)
        types = _lookup(t.ctx_keys, t.ctx_types, h).astype(np.float64)
        d = t.discount
        safe = np.where(total > 0, total, 1.0)
        return np.where(total > 0, (np.maximum(count - d, 0.0) + d * types * lower) / safe, lower)

    def _contexts(self, ids: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        padded = np.concatenate([np.full(self.n - 1, -1, dtype=np.int64), ids])
        if start is not None:
            padded[: self.n - 1] = start
        return np.lib.stride_tricks.sliding_window_view(padded, self.n - 1)[: len(ids)]

    def next_distribution(self, context: str | Sequence[Hashable] = "") -> np.ndarray:
        r""":math:`p(\cdot\mid\text{context})` over the whole vocabulary, shape ``(V,)``."""
        self._check_fitted()
        ids = self._encode(context, "context")[-(self.n - 1) :]
        ids = ids if self.n > 1 else np.array([], np.int64)
        ctx = np.full((1, self.n - 1), -1, dtype=np.int64)
        if ids.size:
            ctx[0, -ids.size :] = ids
        return self.prob(ctx, np.arange(len(self.vocab))[None, :])[0]

    def logprobs(self, tokens: str | Sequence[Hashable]) -> np.ndarray:
        r"""Natural-log probability of each token given its past, :math:`\ln p(x_t\mid x_{<t})`."""
        ids = self.encode(tokens)
        if ids.size == 0:
            raise ValueError("tokens is empty: nothing to score")
        with np.errstate(divide="ignore"):  # an unsmoothed MLE may give p = 0: ln 0 = -inf
            return np.log(self.prob(self._contexts(ids), ids))

    def logprob(self, tokens: str | Sequence[Hashable]) -> float:
        r"""Chain rule: :math:`\ln p(x_{1:T}) = \sum_t \ln p(x_t\mid x_{<t})`."""
        return float(self.logprobs(tokens).sum())

    def cross_entropy(self, tokens: str | Sequence[Hashable], *, base: float = math.e) -> float:
        r"""Per-token cross-entropy :math:`-\frac1T\sum_t \log_b p(x_t\mid x_{<t})`, in nats."""
        if check_number("base", base, low=0.0, strict=True) == 1:
            raise ValueError(f"base must be positive and not 1, got {base!r}")
        return float(-self.logprobs(tokens).mean() / math.log(base))

    def perplexity(self, tokens: str | Sequence[Hashable]) -> float:
        r"""Perplexity :math:`\exp(\text{cross-entropy in nats})` of ``tokens``."""
        return math.exp(self.cross_entropy(tokens))

    def sample(
        self, length: int, rng: np.random.Generator, *, prompt: str | Sequence[Hashable] = ""
    ) -> str | list[Hashable]:
        """Draw ``length`` tokens, one at a time, each from :meth:`next_distribution`.

        ``rng`` is a ``numpy.random.Generator`` (from :func:`llmbook.seed_everything`);
        the result is the prompt followed by the sampled tokens.
        """
        length = check_int("length", length, 0)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._check_fitted()
        ids = list(self._encode(prompt, "prompt"))
        for _ in range(length):
            ctx = ids[-(self.n - 1) :] if self.n > 1 else []
            p = self.next_distribution(self.decode(ctx) if ctx else self._empty())
            ids.append(int(rng.choice(len(p), p=p / p.sum())))
        return self.decode(ids)

    def _empty(self) -> str | list[Hashable]:
        return "" if self._chars else []
