r"""The pretraining data pipeline, made real on the Shakespeare corpus (Chapter 7).

Token storage and batching
--------------------------
A tokenised corpus is one long array of ids written to disk once (:func:`write_tokens`)
and opened as a read-only ``numpy.memmap`` (:func:`open_tokens`), so a corpus larger than
memory costs nothing to "load". :func:`get_batch` draws ``batch_size`` windows of
``block_size + 1`` consecutive tokens at uniformly random offsets and returns inputs
:math:`x_{1..T}` and targets :math:`y_t = x_{t+1}`, the next-token game of Chapter 7.

**Leak-free split.** Training and validation tokens come from different plays
(:mod:`llmbook.corpus` splits by play), each tokenised and stored separately; a window
never straddles the two, and no validation play's text is in the tokenizer's training
text either.

Documents
---------
:func:`documents` cuts a split into documents: whole plays, scenes (the text between two
headings of the play's Markdown: a scene, a prologue, an epilogue or a chorus) or single
speeches (a ``SPEAKER:`` line and its lines). Every unit tiles the split:
``"\n\n".join(documents(split, unit)) + "\n" == shakespeare(split)``.

Deduplication
-------------
*Exact* duplicates are found by hashing a normal form of each document
(:func:`normalize`, :func:`exact_dedup`). *Near* duplicates are pairs with a high Jaccard
similarity :math:`J(A, B) = |A\cap B| / |A\cup B|` of their sets of word k-shingles
(:func:`shingles`, :func:`jaccard`), found without comparing all :math:`\binom{n}{2}`
pairs by MinHash (Broder 1997) and locality-sensitive hashing (Leskovec, Rajaraman &
Ullman, *Mining of Massive Datasets*, ch. 3): :class:`MinHasher`,
:func:`lsh_candidate_pairs`, :func:`near_duplicates`. :func:`decontaminate` flags
training documents that share a word n-gram with an evaluation document (GPT-3's
13-gram contamination test).

Quality filtering
-----------------
:func:`quality_scores` scores each document by its bits per character under the
character n-gram model of Chapter 1 (the perplexity filter of CCNet, in miniature);
:func:`quality_filter` keeps the documents below a threshold.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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
from llmbook.corpus import markdown_to_text, play_paths, play_text, split_plays
from llmbook.ngram import NGramModel

#: dtypes :func:`write_tokens` may store ids in (uint16 holds vocabularies up to 65,536).
TOKEN_DTYPES: tuple[str, ...] = ("uint16", "uint32")
#: The first 8 bytes of a token file; then the dtype's name (8 bytes, NUL-padded ASCII) and
#: the number of ids (little-endian uint64), then the ids themselves, little-endian.
TOKEN_MAGIC: bytes = b"LLMBTOK1"
_HEADER_BYTES = 24


def write_tokens(ids: np.ndarray | list[int], path: str | Path, dtype: str = "uint16") -> Path:
    """Write token ids to ``path`` and return the path (Chapter 7).

    The file is a 24-byte header — :data:`TOKEN_MAGIC`, the dtype's name and the number of
    ids — followed by the ids as a flat little-endian array, so :func:`open_tokens` knows
    how to read it back and can tell a truncated or foreign file. ``dtype`` must hold every
    id: ``"uint16"`` for vocabularies up to 65,536 tokens, ``"uint32"`` beyond.
    """
    check_choice("dtype", dtype, TOKEN_DTYPES)
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"ids must be a non-empty 1-d array of integers, got {arr.dtype} {arr.shape}"
        )
    high = np.iinfo(dtype).max
    if int(arr.min()) < 0 or int(arr.max()) > high:
        raise ValueError(
            f"ids must lie in [0, {high}] for dtype={dtype!r}, got [{arr.min()}, {arr.max()}]"
        )
    path = Path(path)
    header = TOKEN_MAGIC + dtype.encode("ascii").ljust(8, b"\0") + arr.size.to_bytes(8, "little")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(header)
            arr.astype(np.dtype(dtype).newbyteorder("<")).tofile(f)
    except OSError as err:
        raise ValueError(f"path {str(path)!r} is not a writable file: {err}") from None
    return path


def open_tokens(path: str | Path, dtype: str | None = None) -> np.memmap:
    """Open a file written by :func:`write_tokens` as a read-only memory map (Chapter 7).

    The dtype is read from the file's header; ``dtype``, if given, must agree with it.
    A file without the header (e.g. a flat array written by an older llmbook), with an
    unknown dtype, or whose size disagrees with its count of ids is refused as corrupt.
    """
    if dtype is not None:
        check_choice("dtype", dtype, TOKEN_DTYPES)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file of tokens")
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES or header[:8] != TOKEN_MAGIC:
        raise ValueError(
            f"{str(path)!r} is corrupt or not an llmbook token file: it lacks the "
            f"{TOKEN_MAGIC!r} header that write_tokens writes; write it again"
        )
    stored = header[8:16].rstrip(b"\0").decode("ascii", errors="replace")
    count = int.from_bytes(header[16:24], "little")
    if stored not in TOKEN_DTYPES:
        raise ValueError(f"{str(path)!r} is corrupt: its header names the dtype {stored!r}")
    if dtype is not None and dtype != stored:
        raise ValueError(f"{str(path)!r} holds {stored} ids, but dtype={dtype!r} was asked for")
    width = np.dtype(stored).itemsize
    if count == 0 or size != _HEADER_BYTES + count * width:
        raise ValueError(
            f"{str(path)!r} is corrupt: its header announces {count} {stored} ids "
            f"({count * width} bytes), but {size - _HEADER_BYTES} bytes follow it"
        )
    little = np.dtype(stored).newbyteorder("<")
    return np.memmap(path, dtype=little, mode="r", offset=_HEADER_BYTES, shape=(count,))


def _check_device(device: object) -> torch.device:
    try:
        return torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch.device or a name like 'cpu' or 'cuda', got {show(device)}"
        ) from None


def get_batch(
    data: np.ndarray,
    batch_size: int,
    block_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""A random batch of next-token examples from a 1-d token array (Chapter 7).

    Offsets :math:`s_b \sim \mathcal U\{0, \dots, N - T - 1\}` are drawn with ``generator``
    (so a saved generator state replays the same batches); returns ``x[b] =
    data[s_b : s_b + T]`` and ``y[b] = data[s_b + 1 : s_b + T + 1]`` as int64 tensors of
    shape ``(batch_size, block_size)`` on ``device``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    block_size = check_int("block_size", block_size, 1)
    data = check_id_array("data", data)
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    if device is not None:
        device = _check_device(device)
    if len(data) < block_size + 1:
        raise ValueError(
            f"block_size={block_size} needs at least {block_size + 1} tokens, data has {len(data)}"
        )
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    rows = starts.numpy()[:, None] + np.arange(block_size + 1)
    window = torch.from_numpy(np.asarray(data[rows], dtype=np.int64))
    x, y = window[:, :-1], window[:, 1:]
    if device is not None and torch.device(device).type != "cpu":
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x.contiguous(), y.contiguous()


# --------------------------------------------------------------------------- documents
#: Units :func:`documents` can cut a split into.
UNITS: tuple[str, ...] = ("play", "scene", "speech")
_HEADING = re.compile(r"^#{1,6} .*$", flags=re.MULTILINE)


def _scenes(name: str, stage_directions: bool) -> list[str]:
    """The texts between consecutive headings of a play's Markdown, empty ones dropped."""
    markdown = play_paths()[name].read_text(encoding="utf-8")
    parts = (
        markdown_to_text(p, stage_directions=stage_directions) for p in _HEADING.split(markdown)
    )
    return [t.rstrip("\n") for t in parts if t.strip()]


def documents(split: str, unit: str = "speech", *, stage_directions: bool = False) -> list[str]:
    r"""Cut a split of the Shakespeare corpus into documents (Chapter 7).

    ``unit`` is ``"play"`` (one document per play), ``"scene"`` (the text between two
    headings of the play's Markdown: a scene, or a prologue, epilogue or chorus that
    stands alone; act headings add no document) or ``"speech"`` (a ``SPEAKER:`` line with
    its lines, speaker included). Where :mod:`llmbook.corpus` drops a stage direction inside
    a speech, the rest of the speech is a block with no speaker line, and a document of its
    own; with ``stage_directions=True`` each direction is a document too. Documents carry
    no trailing newline and, for every unit, tile the split exactly:
    ``"\n\n".join(documents(split, unit)) + "\n" == shakespeare(split)``.
    """
    check_choice("unit", unit, UNITS)
    stage_directions = check_bool("stage_directions", stage_directions)
    docs: list[str] = []
    for name in split_plays(split):  # raises for an unknown split
        text = play_text(name, stage_directions=stage_directions).rstrip("\n")
        if unit == "play":
            docs.append(text)
        elif unit == "speech":
            docs.extend(text.split("\n\n"))
        else:
            docs.extend(_scenes(name, stage_directions))
    return docs


def _check_docs(name: str, docs: object) -> list[str]:
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise ValueError(f"{name} must be a list of strings, got {type(docs).__name__}")
    if len(docs) == 0:
        raise ValueError(f"{name} is empty: give at least one document")
    bad = next((i for i, d in enumerate(docs) if not isinstance(d, str)), None)
    if bad is not None:
        raise ValueError(f"{name}[{bad}] must be a string, got {type(docs[bad]).__name__}")
    return list(docs)


# --------------------------------------------------------------------------- exact dedup
def normalize(text: str) -> str:
    r"""The normal form documents are compared in (Chapter 7).

    :math:`\operatorname{norm}(x) = \operatorname{strip}(\operatorname{collapse\_ws}(
    \operatorname{casefold}(\operatorname{NFKC}(x))))`: Unicode compatibility composition
    (so "ﬁ" = "fi", full-width "Ａ" = "A"), case folding (stronger than ``lower``: "ß" =
    "ss"), every run of whitespace (including newlines) to one space, no space at the ends.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_dedup(docs: Sequence[str]) -> tuple[list[int], dict[int, int]]:
    r"""Exact deduplication by hashing the normal form (Chapter 7).

    Two documents are duplicates when :math:`\operatorname{sha256}(\operatorname{norm}(x_i))
    = \operatorname{sha256}(\operatorname{norm}(x_j))` (see :func:`normalize`); the first
    occurrence is kept.

    Returns:
        ``(kept, duplicate_of)``: the indices kept, in order, and a map from each removed
        index to the index of the kept document it duplicates.
    """
    docs = _check_docs("docs", docs)
    first: dict[bytes, int] = {}
    kept: list[int] = []
    duplicate_of: dict[int, int] = {}
    for i, doc in enumerate(docs):
        digest = hashlib.sha256(normalize(doc).encode("utf-8")).digest()
        if digest in first:
            duplicate_of[i] = first[digest]
        else:
            first[digest] = i
            kept.append(i)
    return kept, duplicate_of


# --------------------------------------------------------------------------- shingles
def shingles(text: str, k: int = 5) -> set[str]:
    r"""The set of word k-shingles of the normalised text (Chapter 7).

    :math:`S_k(x) = \{w_i w_{i+1} \dots w_{i+k-1} : 1 \le i \le m - k + 1\}` for the words
    :math:`w_1 \dots w_m` of :func:`normalize` ``(x)`` (split at spaces; punctuation stays
    on its word), each shingle a string of ``k`` words joined by spaces. A text of fewer
    than ``k`` words gives the one shingle of its whole normal form; only a text that is
    empty after normalising gives the empty set.
    """
    k = check_int("k", k, 1)
    words = normalize(text).split(" ")
    if words == [""]:
        return set()
    if len(words) < k:
        return {" ".join(words)}
    return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set | frozenset, b: set | frozenset) -> float:
    r"""Jaccard similarity :math:`J(A, B) = |A\cap B| / |A\cup B|` (Chapter 7).

    It lies in :math:`[0, 1]`, is 1 exactly when the sets are equal and 0 when they are
    disjoint; two empty sets are equal, so :math:`J(\emptyset, \emptyset) = 1` by convention.
    """
    if not isinstance(a, set | frozenset) or not isinstance(b, set | frozenset):
        raise ValueError(f"a and b must be sets, got {type(a).__name__} and {type(b).__name__}")
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


# --------------------------------------------------------------------------- MinHash
#: The Mersenne prime :math:`p = 2^{61} - 1` of the universal hash family.
MERSENNE_61: int = (1 << 61) - 1
_P = np.uint64(MERSENNE_61)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW29 = np.uint64((1 << 29) - 1)


def _mod_p(v: np.ndarray) -> np.ndarray:
    """v mod p, in place, for any uint64 v, using 2**61 = 1 (mod p)."""
    high = v >> np.uint64(61)
    v &= _P
    v += high  # <= p + 7
    np.subtract(v, _P, out=v, where=v >= _P)
    return v


def _affine_mod(a: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""(a x + b) mod p for uint64 arrays (broadcast) with entries below p = 2**61 - 1.

    The product of two 61-bit numbers overflows 64 bits, so split a = a_h 2^32 + a_l and
    x = x_h 2^32 + x_l (a_h, x_h < 2^29) and reduce each partial product with
    2^61 = 1 (mod p): a_h x_h 2^64 = 8 a_h x_h, the middle term m = a_h x_l + a_l x_h
    (< 2^62) gives m 2^32 = (m >> 29) + (m mod 2^29) 2^32, and a_l x_l (< 2^64) gives
    (a_l x_l mod 2^61) + (a_l x_l >> 61). Every partial sum stays below 2^63. The
    operations are in place: on blocks that fit in cache this is what makes it fast.
    """
    a_h, a_l = a >> np.uint64(32), a & _LOW32
    x_h, x_l = x >> np.uint64(32), x & _LOW32
    mid = a_h * x_l
    tmp = a_l * x_h
    mid += tmp  # < 2^62
    total = a_h * x_h
    total <<= np.uint64(3)  # < 2^61
    np.right_shift(mid, np.uint64(29), out=tmp)
    total += tmp  # + < 2^33
    mid &= _LOW29
    mid <<= np.uint64(32)
    total += mid  # + < 2^61
    np.multiply(a_l, x_l, out=mid)  # the low product, < 2^64
    np.bitwise_and(mid, _P, out=tmp)
    total += tmp  # + <= p
    mid >>= np.uint64(61)
    total += mid  # + <= 7: total < 2^63
    total = _mod_p(total)
    total += b  # < 2p
    np.subtract(total, _P, out=total, where=total >= _P)
    return total


def _shingle_hash(shingle: str) -> int:
    """A stable 64-bit hash of a shingle (blake2b; Python's hash() is salted per process)."""
    return int.from_bytes(
        hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little"
    )


class MinHasher:
    r"""MinHash signatures with a universal hash family (Broder 1997; Chapter 7).

    Each shingle :math:`s` is hashed to :math:`x = \operatorname{blake2b}_{64}(s) \bmod p`,
    then by ``num_perm`` random functions :math:`h_i(x) = (a_i x + b_i) \bmod p` with
    :math:`p = 2^{61}-1`, :math:`a_i \in [1, p)`, :math:`b_i \in [0, p)` drawn from
    ``numpy.random.default_rng(seed)``. The signature of a set is
    :math:`\operatorname{sig}_i(A) = \min_{x\in A} h_i(x)`, and
    :math:`P[\operatorname{sig}_i(A) = \operatorname{sig}_i(B)] \approx J(A, B)`, so the
    fraction of equal components (:func:`estimate_jaccard`) estimates the Jaccard
    similarity with standard error :math:`\sqrt{J(1-J)/\text{num\_perm}}`.
    """

    #: hash values per block: 2**17 x 8 bytes = 1 MiB per temporary, small enough for cache
    _BLOCK = 1 << 17

    def __init__(self, num_perm: int = 128, seed: int = 0) -> None:
        self.num_perm = check_int("num_perm", num_perm, 1)
        self.seed = check_int("seed", seed, 0)
        rng = np.random.default_rng(self.seed)
        self.a = rng.integers(1, MERSENNE_61, size=self.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, MERSENNE_61, size=self.num_perm, dtype=np.uint64)

    def hash_values(self, x: np.ndarray) -> np.ndarray:
        r"""The hash table :math:`h_i(x_j) = (a_i x_j + b_i) \bmod p` for uint64 ``x < p``.

        Returns a uint64 array ``(len(x), num_perm)``.
        """
        x = np.asarray(x)
        ok = x.ndim == 1 and (x.size == 0 or np.issubdtype(x.dtype, np.integer))
        if not ok or (x.size and (x.min() < 0 or x.max() >= MERSENNE_61)):
            raise ValueError(f"x must be a 1-d array of integers in [0, 2**61 - 1), got {x!r:.60}")
        x = x.astype(np.uint64)
        return _affine_mod(self.a[None, :], x[:, None], self.b)

    def signature(self, shingle_set: set[str] | frozenset[str]) -> np.ndarray:
        r"""The MinHash signature :math:`\min_{s\in A} h_i(s)`, a uint64 array ``(num_perm,)``."""
        return self.signatures([shingle_set])[0]

    def signatures(self, shingle_sets: Sequence[set[str] | frozenset[str]]) -> np.ndarray:
        r"""Signatures of many sets, a uint64 array ``(n, num_perm)``; vectorised over blocks.

        The MinHash of the empty set is undefined, so an empty set raises ``ValueError``.
        """
        if isinstance(shingle_sets, set | frozenset | str) or not isinstance(
            shingle_sets, Sequence
        ):
            raise ValueError(
                f"shingle_sets must be a list of sets, got {type(shingle_sets).__name__}"
            )
        if len(shingle_sets) == 0:
            raise ValueError("shingle_sets is empty: give at least one set")
        for i, s in enumerate(shingle_sets):
            if not isinstance(s, set | frozenset) or len(s) == 0:
                raise ValueError(
                    f"shingle_sets[{i}] must be a non-empty set of strings (MinHash of an "
                    f"empty set is undefined), got {s!r:.60}"
                )
        lengths = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64)
        try:
            x = np.fromiter(
                (_shingle_hash(t) for s in shingle_sets for t in s),
                dtype=np.uint64,
                count=lengths.sum(),
            )
        except AttributeError:  # str.encode missing: not a string
            raise ValueError("shingle_sets must hold sets of strings (see shingles())") from None
        x = _mod_p(x)
        owner = np.repeat(np.arange(len(shingle_sets)), lengths)
        out = np.full((len(shingle_sets), self.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
        block = max(1, self._BLOCK // self.num_perm)  # shingles per block
        for start in range(0, len(x), block):
            stop = min(start + block, len(x))
            who = owner[start:stop]
            cuts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
            h = _affine_mod(self.a[None, :], x[start:stop, None], self.b)
            mins = np.minimum.reduceat(h, cuts, axis=0)
            out[who[cuts]] = np.minimum(out[who[cuts]], mins)
        return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float | np.ndarray:
    r"""MinHash estimate :math:`\hat J = \frac{1}{K}\sum_{i=1}^{K} [\operatorname{sig}_i(A) =
    \operatorname{sig}_i(B)]` (Chapter 7).

    Signatures of shape ``(K,)`` give a float; equal shapes ``(n, K)`` give one estimate
    per row.
    """
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim not in (1, 2) or sig_a.shape[-1] == 0:
        raise ValueError(
            f"sig_a and sig_b must have the same shape (K,) or (n, K) with K >= 1, "
            f"got {sig_a.shape} and {sig_b.shape}"
        )
    est = (sig_a == sig_b).mean(axis=-1)
    return float(est) if sig_a.ndim == 1 else est


# --------------------------------------------------------------------------- LSH
def lsh_candidate_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    r"""Probability that a pair of Jaccard similarity ``s`` becomes an LSH candidate (Chapter 7).

    With the signature cut into ``bands`` bands of ``rows`` rows, a pair is a candidate when
    all rows of at least one band agree: :math:`P(s) = 1 - (1 - s^r)^b`, an S-curve that
    rises steepest near :func:`lsh_threshold`.
    """
    bands, rows = check_int("bands", bands, 1), check_int("rows", rows, 1)
    arr = np.asarray(s, dtype=np.float64)
    if not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"s must lie in [0, 1], got {s!r}")
    p = 1.0 - (1.0 - arr**rows) ** bands
    return float(p) if arr.ndim == 0 else p


def lsh_threshold(bands: int, rows: int) -> float:
    r"""The similarity where the LSH S-curve rises, :math:`t \approx (1/b)^{1/r}` (Chapter 7)."""
    bands, rows = check_int("bands", bands, 1), check_int("rows", rows, 1)
    return (1.0 / bands) ** (1.0 / rows)


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    r"""Candidate pairs by banding MinHash signatures (Chapter 7; MMDS §3.4).

    The ``(n, K)`` signatures, :math:`K = b\,r`, are cut into ``bands`` bands of ``rows``
    columns; documents whose rows agree on a whole band fall in the same bucket, and every
    pair sharing a bucket in some band is a candidate :math:`(i, j)`, :math:`i < j`.
    A bucket of m documents gives :math:`\binom{m}{2}` pairs, so remove exact duplicates first.
    """
    bands, rows = check_int("bands", bands, 1), check_int("rows", rows, 1)
    sig = np.asarray(signatures)
    if sig.ndim != 2 or sig.shape[1] != bands * rows:
        raise ValueError(
            f"signatures must have shape (n, bands * rows) = (n, {bands * rows}), got {sig.shape}"
        )
    pairs: set[tuple[int, int]] = set()
    row_bytes = np.dtype((np.void, rows * sig.dtype.itemsize))
    for band in range(bands):
        # one opaque value per document: the bytes of its r rows in this band
        key = np.ascontiguousarray(sig[:, band * rows : (band + 1) * rows]).view(row_bytes)[:, 0]
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1], True])
        shared = np.flatnonzero(np.diff(bounds) > 1)  # buckets holding several documents
        for lo, hi in zip(bounds[shared], bounds[shared + 1], strict=True):
            pairs.update(itertools.combinations(sorted(order[lo:hi].tolist()), 2))
    return pairs


@dataclass(frozen=True)
class NearDuplicate:
    """A near-duplicate pair ``i < j`` with its MinHash estimate and exact Jaccard similarity."""

    i: int
    j: int
    estimated_jaccard: float
    true_jaccard: float

    def __post_init__(self) -> None:
        i, j = check_int("i", self.i, 0), check_int("j", self.j, 0)
        if i >= j:
            raise ValueError(f"i must be < j, got i={i}, j={j}")
        for name in ("estimated_jaccard", "true_jaccard"):
            check_number(name, getattr(self, name), low=0.0, high=1.0)


def _threshold(value: object) -> float:
    if not is_number(value) or not 0 < value <= 1:  # type: ignore[operator]
        raise ValueError(f"threshold must lie in (0, 1], got {show(value)}")
    return float(value)  # type: ignore[arg-type]


def near_duplicates(
    docs: Sequence[str],
    threshold: float = 0.8,
    k: int = 5,
    num_perm: int = 128,
    bands: int = 16,
    seed: int = 0,
) -> list[NearDuplicate]:
    r"""Near-duplicate pairs by MinHash and LSH (Chapter 7).

    Shingle each document (:func:`shingles` with ``k``), sign it with
    :class:`MinHasher` ``(num_perm, seed)``, band the signatures into ``bands`` bands of
    :math:`r = \text{num\_perm}/\text{bands}` rows (:func:`lsh_candidate_pairs`), and keep
    the candidates with :math:`\hat J \ge` ``threshold``. Each kept pair also carries its
    exact :math:`J` (computed only for the kept pairs). A pair with :math:`J = s` is missed
    with probability :math:`(1 - s^r)^b` (:func:`lsh_candidate_probability`); choose
    ``bands`` so that :func:`lsh_threshold` lies below ``threshold``.

    Returns:
        the pairs, sorted by ``(i, j)``.
    """
    docs = _check_docs("docs", docs)
    threshold = _threshold(threshold)
    k = check_int("k", k, 1)
    num_perm, bands = check_int("num_perm", num_perm, 1), check_int("bands", bands, 1)
    if num_perm % bands:
        raise ValueError(f"num_perm={num_perm} must be divisible by bands={bands}")
    sets = [shingles(d, k) for d in docs]
    empty = next((i for i, s in enumerate(sets) if not s), None)
    if empty is not None:
        raise ValueError(f"docs[{empty}] is empty after normalising: it has no shingles")
    sig = MinHasher(num_perm, seed).signatures(sets)
    pairs = sorted(lsh_candidate_pairs(sig, bands, num_perm // bands))
    if not pairs:
        return []
    ij = np.array(pairs)
    est = estimate_jaccard(sig[ij[:, 0]], sig[ij[:, 1]])
    return [
        NearDuplicate(i, j, float(e), jaccard(sets[i], sets[j]))
        for (i, j), e in zip(pairs, est, strict=True)
        if e >= threshold
    ]


def decontaminate(train_docs: Sequence[str], eval_docs: Sequence[str], n: int = 13) -> list[int]:
    r"""Training documents that share a word n-gram with any evaluation document (Chapter 7).

    GPT-3's contamination test (Brown et al. 2020, appendix C): document :math:`x` is flagged
    when :math:`S_n(x) \cap \bigcup_{e} S_n(e) \ne \emptyset`, with :math:`S_n` the word
    n-shingles of :func:`shingles`. A document of fewer than ``n`` words is its own single
    shingle: it is flagged only when an evaluation document has the same normal form,
    never for occurring inside a longer one.

    Returns:
        the flagged indices into ``train_docs``, in order.
    """
    train_docs = _check_docs("train_docs", train_docs)
    eval_docs = _check_docs("eval_docs", eval_docs)
    n = check_int("n", n, 1)
    seen: set[str] = set()
    for doc in eval_docs:
        seen |= shingles(doc, n)
    return [i for i, doc in enumerate(train_docs) if not seen.isdisjoint(shingles(doc, n))]


# --------------------------------------------------------------------------- quality
#: The default cost in bits of a character outside the model's vocabulary, that of naming
#: one of the 0x110000 Unicode code points uniformly, :math:`\log_2 1114112 \approx 20.09`.
UNICODE_BITS: float = math.log2(0x110000)


def quality_scores(
    docs: Sequence[str], model: NGramModel, *, oov_bits: float | None = UNICODE_BITS
) -> np.ndarray:
    r"""Bits per character of each document under a character n-gram model (Chapter 7).

    .. math:: q(x) = \frac{1}{|x|}\Big(\sum_{t:\,x_t \in V} -\log_2 p(x_t \mid x_{<t})
              + N_{\text{oov}}(x)\,c_{\text{oov}}\Big)

    Each document is scored on its own (its first characters use the model's lower
    orders, exactly as ``model.cross_entropy(doc, base=2)``). A character outside the
    model's vocabulary :math:`V` has probability 0 under the model; it is charged
    ``oov_bits`` (:data:`UNICODE_BITS` by default) and left out of the contexts of the
    characters after it. ``oov_bits=None`` makes such a character an error instead.
    An unsmoothed model (``add_k`` with ``k=0``) may give ``inf``.

    Returns:
        float array ``(len(docs),)``; lower is more like the model's training text.
    """
    docs = _check_docs("docs", docs)
    if not isinstance(model, NGramModel):
        raise ValueError(f"model must be an llmbook.ngram.NGramModel, got {type(model).__name__}")
    V = model.vocab_size  # raises if not fitted
    if not all(isinstance(t, str) and len(t) == 1 for t in model.vocab):
        raise ValueError("model must be a character model: its vocab must be single characters")
    if oov_bits is not None:
        oov_bits = check_number("oov_bits", oov_bits, low=0.0, what="a finite number >= 0 or None")
    empty = next((i for i, d in enumerate(docs) if not d), None)
    if empty is not None:
        raise ValueError(f"docs[{empty}] is empty: bits per character is undefined")
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    codes = np.frombuffer("".join(docs).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    vocab_codes = np.fromiter((ord(c) for c in model.vocab), dtype=np.uint32, count=V)
    order = np.argsort(vocab_codes)
    slot = np.minimum(np.searchsorted(vocab_codes[order], codes), V - 1)
    known = vocab_codes[order][slot] == codes
    owner = np.repeat(np.arange(len(docs)), lengths)
    n_oov = np.bincount(owner[~known], minlength=len(docs))
    if oov_bits is None and n_oov.any():
        i = int(np.flatnonzero(n_oov)[0])
        chars = sorted({c for c in docs[i] if c not in set(model.vocab)})
        raise ValueError(
            f"docs[{i}] has characters outside the model's vocabulary: {chars[:10]}; "
            "pass oov_bits=... to charge them a fixed cost"
        )
    ids, owner = order[slot[known]].astype(np.int64), owner[known]
    first = np.searchsorted(owner, np.arange(len(docs)))  # where each document starts in ids
    pos = np.arange(len(ids)) - first[owner]  # position of each character in its document
    bits = np.zeros(len(docs))
    block = 1 << 20
    for start in range(0, len(ids), block):
        t = np.arange(start, min(start + block, len(ids)))
        ctx = np.full((len(t), model.n - 1), -1, dtype=np.int64)
        for back in range(1, model.n):  # column n-1-back holds the token `back` places back
            ok = pos[t] >= back
            ctx[ok, model.n - 1 - back] = ids[t[ok] - back]
        with np.errstate(divide="ignore"):
            surprise = -np.log2(model.prob(ctx, ids[t]))
        bits += np.bincount(owner[t], weights=surprise, minlength=len(docs))
    return (bits + n_oov * (oov_bits or 0.0)) / lengths


def quality_filter(
    docs: Sequence[str],
    model: NGramModel,
    max_bits_per_char: float,
    *,
    oov_bits: float | None = UNICODE_BITS,
) -> tuple[list[int], np.ndarray]:
    r"""Keep the documents the n-gram model finds likely: :math:`q(x) \le q_{\max}` (Chapter 7).

    :math:`q` is :func:`quality_scores`. Returns ``(kept, scores)``: the kept indices, in
    order, and every document's score.
    """
    max_bits_per_char = check_number("max_bits_per_char", max_bits_per_char, low=0.0, strict=True)
    scores = quality_scores(docs, model, oov_bits=oov_bits)
    return np.flatnonzero(scores <= max_bits_per_char).tolist(), scores


__all__ = [
    "MERSENNE_61",
    "TOKEN_DTYPES",
    "TOKEN_MAGIC",
    "UNICODE_BITS",
    "UNITS",
    "MinHasher",
    "NearDuplicate",
    "decontaminate",
    "documents",
    "estimate_jaccard",
    "exact_dedup",
    "get_batch",
    "jaccard",
    "lsh_candidate_pairs",
    "lsh_candidate_probability",
    "lsh_threshold",
    "near_duplicates",
    "normalize",
    "open_tokens",
    "quality_filter",
    "quality_scores",
    "shingles",
    "write_tokens",
]
