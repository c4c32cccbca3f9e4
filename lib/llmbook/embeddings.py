r"""Word embeddings learned from counts: PPMI and truncated SVD (Chapter 4).

The distributional hypothesis — a word is characterised by the company it keeps — turns
into vectors in three steps, each a function here:

1. :func:`cooccurrence_matrix` counts how often word :math:`w` has context word
   :math:`c` within ``window`` positions, :math:`\#(w, c)`.
2. :func:`ppmi` turns counts into positive pointwise mutual information,
   :math:`\max\big(0, \log \frac{\hat P(w, c)}{\hat P(w)\,\hat P_\alpha(c)}\big)`, with the
   context distribution smoothed by :math:`\alpha = 0.75` (Levy, Goldberg and Dagan 2015).
3. :func:`svd_embeddings` factorises the PPMI matrix by a singular value decomposition
   and keeps :math:`W = U_d\,\Sigma_d^{\,p}` as the :math:`d`-dimensional word vectors.

Levy and Goldberg (2014) showed that skip-gram with negative sampling (word2vec)
implicitly factorises a shifted PMI matrix, so this count-based route and word2vec learn
closely related vectors; on a corpus as small as ours the count-based one is faster and
deterministic. :func:`nearest_neighbours` and :func:`analogy` query the vectors by cosine
similarity. :func:`words` cuts the book's Shakespeare text into lower-case words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from llmbook._validate import check_bool, check_int, check_number, show

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SPEAKER = re.compile(r"^[^a-z\n]+:$", flags=re.MULTILINE)  # "KING HENRY V:" lines


def words(text: str, *, drop_speakers: bool = True) -> list[str]:
    """Lower-case word tokens of ``text``: runs of letters, keeping inner apostrophes.

    ``o'er`` and ``ne'er`` stay whole; a leading or trailing apostrophe is dropped
    (``'Tis`` gives ``tis``). With ``drop_speakers`` (default), lines that consist of a
    speaker's name — no lower-case letter, ending in a colon, as
    :func:`llmbook.corpus.shakespeare` writes them — are removed first, so character
    names count only where the verse uses them. Hyphenated words are split at the
    hyphen; digits and punctuation are dropped.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if check_bool("drop_speakers", drop_speakers):
        text = _SPEAKER.sub("", text)
    return _WORD.findall(text.lower())


def build_vocab(tokens: Sequence[str], min_count: int = 1) -> list[str]:
    """The tokens seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    min_count = check_int("min_count", min_count, 1)
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"tokens must be a list of strings (see words()), got {show(tokens)}")
    counts = Counter(tokens)
    vocab = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not vocab:
        raise ValueError(f"no token occurs min_count={min_count} times: the vocabulary is empty")
    return vocab


def cooccurrence_matrix(ids: np.ndarray, vocab_size: int, window: int) -> np.ndarray:
    r"""Symmetric co-occurrence counts :math:`\#(w, c)`, shape ``(vocab_size, vocab_size)``.

    Every pair of tokens at distance :math:`1 \le |t - t'| \le` ``window`` in ``ids``
    counts once in each direction, so :math:`\#(w, c) = \#(c, w)` and the row sums are
    :math:`2\,\text{window}` per token away from the ends. Tokens outside the vocabulary
    must be removed from ``ids`` beforehand (as word2vec does with rare words), which
    brings the remaining words closer together.
    """
    vocab_size = check_int("vocab_size", vocab_size, 1)
    window = check_int("window", window, 1)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"ids must be a 1-D array of integer token ids, got {ids.dtype} {ids.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, vocab_size={vocab_size})")
    ids = ids.astype(np.int64)
    counts = np.zeros(vocab_size * vocab_size, dtype=np.float64)
    for k in range(1, min(window, max(ids.size - 1, 0)) + 1):
        counts += np.bincount(ids[:-k] * vocab_size + ids[k:], minlength=vocab_size**2)
    counts = counts.reshape(vocab_size, vocab_size)
    return counts + counts.T


def ppmi(counts: np.ndarray, *, alpha: float = 0.75) -> np.ndarray:
    r"""Positive pointwise mutual information of a co-occurrence matrix (Chapter 4).

    .. math::
        \mathrm{PPMI}(w, c) = \max\!\Big(0,\ \log
        \frac{\#(w,c)\,\sum_{c'} \#(c')^{\alpha}}{\#(w)\,\#(c)^{\alpha}}\Big),

    where :math:`\#(w) = \sum_c \#(w, c)` and :math:`\#(c) = \sum_w \#(w, c)`; this is
    :math:`\log \hat P(w,c) / (\hat P(w)\,\hat P_\alpha(c))` with the context distribution
    raised to the power ``alpha`` and renormalised, which lowers the PMI of rare contexts
    (``alpha=1`` is plain PMI). Pairs never seen have PMI :math:`-\infty` and PPMI 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 2-D matrix, got shape {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("counts must be finite and non-negative")
    alpha = check_number("alpha", alpha, low=0.0, high=1.0, strict=True)
    total = counts.sum()
    if total == 0:
        raise ValueError("counts is all zeros: no co-occurrences to learn from")
    row = counts.sum(1)
    ctx = counts.sum(0) ** alpha
    p_ctx = ctx / ctx.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts / total) - np.log(row / total)[:, None] - np.log(p_ctx)[None, :]
    return np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)


def svd_embeddings(matrix: np.ndarray, dim: int, *, power: float = 0.5) -> np.ndarray:
    r"""Word vectors :math:`W = U_d\,\Sigma_d^{\,p}` from the truncated SVD of ``matrix``.

    With the singular value decomposition :math:`M = U \Sigma V^\top` (singular values in
    decreasing order), keep the first ``dim`` columns of :math:`U` and weight them by the
    singular values to the power ``power``. :math:`p = 1` gives the best rank-:math:`d`
    reconstruction :math:`W V_d^\top \approx M` (Eckart–Young); :math:`p = 0.5` usually
    gives better word similarities (Levy, Goldberg and Dagan 2015). The SVD is exact
    (LAPACK); each column's sign is fixed so that its largest-magnitude entry is positive,
    which makes the result reproducible (cosine similarities do not depend on it). Shape
    ``(rows, dim)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0 or not np.isfinite(m).all():
        raise ValueError(f"matrix must be a finite, non-empty 2-D array, got shape {m.shape}")
    dim = check_int("dim", dim, 1, min(m.shape))
    power = check_number("power", power, low=0.0, high=1.0)
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    u, s = u[:, :dim], s[:dim]
    u = u * np.sign(u[np.abs(u).argmax(0), np.arange(dim)])
    return u * s**power


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    try:
        e = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"embeddings must be a 2-D array of numbers, got {show(embeddings)}"
        ) from None
    if e.ndim != 2 or not np.isfinite(e).all():
        raise ValueError(
            f"embeddings must be a finite 2-D array (one row per word), got shape {e.shape}"
        )
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(norms > 0, norms, 1.0)


def _index(vocab: Sequence[str], embeddings: np.ndarray) -> dict[str, int]:
    if isinstance(vocab, str) or not isinstance(vocab, Sequence):
        raise ValueError(f"vocab must be a list of words, got {show(vocab)}")
    if not hasattr(embeddings, "__len__"):
        raise ValueError(
            f"embeddings must be a 2-D array (one row per word), got {show(embeddings)}"
        )
    if len(vocab) != len(embeddings):
        raise ValueError(f"vocab has {len(vocab)} words but embeddings has {len(embeddings)} rows")
    return {w: i for i, w in enumerate(vocab)}


def _lookup(stoi: dict[str, int], word: str, name: str) -> int:
    if not isinstance(word, str):
        raise ValueError(f"{name} must be a word (a str), got {show(word)}")
    if word not in stoi:
        raise ValueError(f"{name}={word!r} is not in the vocabulary")
    return stoi[word]


def nearest_neighbours(
    embeddings: np.ndarray, vocab: Sequence[str], word: str, k: int = 10
) -> list[tuple[str, float]]:
    r"""The ``k`` words with the highest cosine similarity to ``word`` (itself excluded).

    :math:`\cos(u, v) = u^\top v / (\lVert u\rVert\,\lVert v\rVert)`; ties are broken by
    vocabulary order.
    """
    k = check_int("k", k, 1)
    stoi = _index(vocab, embeddings)
    unit = _unit_rows(embeddings)
    i = _lookup(stoi, word, "word")
    sims = unit @ unit[i]
    sims[i] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return [(vocab[j], float(sims[j])) for j in order]


def analogy_scores(
    embeddings: np.ndarray, vocab: Sequence[str], a: str, b: str, c: str
) -> np.ndarray:
    r"""3CosAdd scores for "``a`` is to ``b`` as ``c`` is to ?" (Mikolov et al. 2013).

    :math:`\operatorname{score}(x) = \cos(x,\ \hat b - \hat a + \hat c)` for every word
    :math:`x`, with :math:`\hat v = v / \lVert v\rVert`; "king − man + woman" is
    ``a="man", b="king", c="woman"``. One score per vocabulary word.
    """
    stoi = _index(vocab, embeddings)
    unit = _unit_rows(embeddings)
    ia, ib, ic = (_lookup(stoi, w, n) for w, n in ((a, "a"), (b, "b"), (c, "c")))
    target = unit[ib] - unit[ia] + unit[ic]
    norm = np.linalg.norm(target)
    return unit @ (target / norm if norm > 0 else target)


def analogy(
    embeddings: np.ndarray,
    vocab: Sequence[str],
    a: str,
    b: str,
    c: str,
    *,
    k: int = 5,
    exclude_inputs: bool = True,
) -> list[tuple[str, float]]:
    """The ``k`` best answers to "``a`` is to ``b`` as ``c`` is to ?" by :func:`analogy_scores`.

    ``exclude_inputs=True`` drops ``a``, ``b`` and ``c`` from the answers, as the standard
    evaluation of Mikolov et al. (2013) does; without it the answer is very often ``b``
    itself (Chapter 4 measures how often).
    """
    k = check_int("k", k, 1)
    exclude_inputs = check_bool("exclude_inputs", exclude_inputs)
    scores = analogy_scores(embeddings, vocab, a, b, c)
    if exclude_inputs:
        stoi = _index(vocab, embeddings)
        scores[[stoi[a], stoi[b], stoi[c]]] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [(vocab[j], float(scores[j])) for j in order]


def analogy_rank(
    embeddings: np.ndarray,
    vocab: Sequence[str],
    a: str,
    b: str,
    c: str,
    target: str,
    *,
    exclude_inputs: bool = True,
) -> int:
    """Rank (1 = best) of ``target`` among the answers of :func:`analogy`."""
    stoi = _index(vocab, embeddings)
    it = _lookup(stoi, target, "target")
    exclude_inputs = check_bool("exclude_inputs", exclude_inputs)
    scores = analogy_scores(embeddings, vocab, a, b, c)
    if exclude_inputs:
        if target in (a, b, c):
            raise ValueError(f"target={target!r} is one of the inputs, which are excluded")
        scores[[stoi[a], stoi[b], stoi[c]]] = -np.inf
    return int((scores > scores[it]).sum()) + 1
