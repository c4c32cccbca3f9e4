r"""Constrained decoding: a regular expression compiled to an automaton over the tokenizer's
vocabulary, as a logits processor (Chapter 12).

A pattern becomes a deterministic finite automaton (DFA) in two classic steps: Thompson's
construction turns it into a nondeterministic automaton with :math:`\varepsilon`-moves
(:func:`thompson_nfa`), and the subset construction turns that into a DFA whose states are
sets of NFA states (:func:`compile_regex`). States from which no accepting state can be
reached are removed, so "still alive" means "can still be completed to a match".

The DFA reads bytes; a language model emits tokens, each a string of bytes. Lifting the
DFA to the vocabulary (:func:`token_transitions`) walks every token's bytes from every
state: token :math:`v` is allowed in state :math:`s` iff the walk stays alive.
:class:`RegexConstraint` masks the other tokens (score :math:`-\infty`) and allows the
end-of-sequence token only in accepting states, so every finished output matches the
pattern, and among the allowed tokens the distribution is the model's, renormalised.

**The pattern subset.** Literals, ``.`` (any ASCII character but newline), character
classes ``[abc]``, ``[a-z0-9_]``, ``[^…]``, the escapes ``\d \w \s`` (ASCII meanings), ``\n
\t`` and escaped metacharacters (``\.``, ``\(``…), alternation ``|``, groups ``( )``, and
the repeats ``* + ?``. Everything is ASCII: the DFA agrees with
``re.fullmatch(pattern, s, re.ASCII)`` on ASCII strings (tested on random strings);
``{m,n}``, anchors and backreferences are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from llmbook._validate import check_int, check_type, show

ASCII = frozenset(range(128))
_CLASSES = {
    "d": frozenset(range(48, 58)),
    "w": frozenset([*range(48, 58), *range(65, 91), *range(97, 123), 95]),
    "s": frozenset(b" \t\n\r\f\v"),
}
_ESCAPES = {"n": ord("\n"), "t": ord("\t"), "r": ord("\r"), "f": ord("\f"), "v": ord("\v")}
_META = set("()[]|*+?.\\{}^$")


# ----------------------------------------------------------------------------- parser
class _Parser:
    """Recursive descent over the subset: alt := concat ('|' concat)*; concat := repeat*;
    repeat := atom ('*' | '+' | '?')*; atom := '(' alt ')' | class | '.' | escape | char.
    Produces a tree of tuples: ("set", bytes), ("cat", a, b), ("alt", a, b), ("star", a),
    ("plus", a), ("opt", a), ("empty",)."""

    def __init__(self, pattern: str) -> None:
        self.p, self.i = pattern, 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"pattern {self.p!r}: {what} at position {self.i}")

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def parse(self) -> tuple:
        tree = self.alt()
        if self.i != len(self.p):
            raise self.error(f"unexpected {self.p[self.i]!r}")
        return tree

    def alt(self) -> tuple:
        tree = self.concat()
        while self.peek() == "|":
            self.i += 1
            tree = ("alt", tree, self.concat())
        return tree

    def concat(self) -> tuple:
        tree: tuple = ("empty",)
        while self.peek() not in (None, "|", ")"):
            part = self.repeat()
            tree = part if tree == ("empty",) else ("cat", tree, part)
        return tree

    def repeat(self) -> tuple:
        tree = self.atom()
        while self.peek() in ("*", "+", "?"):
            op = {"*": "star", "+": "plus", "?": "opt"}[self.p[self.i]]
            self.i += 1
            tree = (op, tree)
        return tree

    def atom(self) -> tuple:
        c = self.p[self.i]
        if c == "(":
            self.i += 1
            tree = self.alt()
            if self.peek() != ")":
                raise self.error("missing ')'")
            self.i += 1
            return tree
        if c == "[":
            return ("set", self.char_class())
        if c == ".":
            self.i += 1
            return ("set", ASCII - {ord("\n")})
        if c == "\\":
            return ("set", self.escape())
        if c in "*+?":
            raise self.error(f"nothing to repeat before {c!r}")
        if c in _META:
            raise self.error(f"{c!r} is not in the supported subset")
        self.i += 1
        return ("set", self.literal(c))

    def literal(self, c: str) -> frozenset[int]:
        if ord(c) > 127:
            raise self.error(f"non-ASCII character {c!r} (the subset is ASCII)")
        return frozenset([ord(c)])

    def escape(self) -> frozenset[int]:
        self.i += 1
        if self.i >= len(self.p):
            raise self.error("dangling backslash")
        c = self.p[self.i]
        self.i += 1
        if c in _CLASSES:
            return _CLASSES[c]
        if c.lower() in _CLASSES:
            return ASCII - _CLASSES[c.lower()]
        if c in _ESCAPES:
            return frozenset([_ESCAPES[c]])
        if c in _META or c in "-/ ,:;'\"!#&%@=<>~`":
            return self.literal(c)
        raise self.error(f"unsupported escape \\{c}")

    def char_class(self) -> frozenset[int]:
        self.i += 1
        negate = self.peek() == "^"
        self.i += negate
        members: set[int] = set()
        first = True
        while True:
            c = self.peek()
            if c is None:
                raise self.error("missing ']'")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                lo_set = self.escape()
            else:
                self.i += 1
                lo_set = self.literal(c)
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                if len(lo_set) != 1:
                    raise self.error("a range needs single characters at both ends")
                self.i += 1
                hi_c = self.p[self.i]
                hi_set = self.escape() if hi_c == "\\" else None
                if hi_set is None:
                    self.i += 1
                    hi_set = self.literal(hi_c)
                lo, hi = min(lo_set), min(hi_set)
                if len(hi_set) != 1 or hi < lo:
                    raise self.error("bad character range")
                members.update(range(lo, hi + 1))
            else:
                members.update(lo_set)
        return ASCII - members if negate else frozenset(members)


# -------------------------------------------------------------------------------- NFA
@dataclass
class NFA:
    """A Thompson automaton: ``eps[q]`` lists the :math:`\\varepsilon`-successors of state
    ``q``, ``edges[q]`` its (byte set, successor) pairs; one ``start``, one ``accept``."""

    eps: list[list[int]]
    edges: list[list[tuple[frozenset[int], int]]]
    start: int
    accept: int

    def __post_init__(self) -> None:
        ok = isinstance(self.eps, list) and isinstance(self.edges, list)
        if not ok or len(self.eps) != len(self.edges) or not self.eps:
            raise ValueError(
                f"eps and edges must be non-empty lists of equal length, got {show(self.eps)}"
                f" and {show(self.edges)}"
            )
        n = len(self.eps)
        self.start = check_int("start", self.start, 0, n - 1)
        self.accept = check_int("accept", self.accept, 0, n - 1)


def thompson_nfa(pattern: str) -> NFA:
    r"""Thompson's construction: each piece of the pattern becomes a fragment with one
    entry and one exit state, glued by :math:`\varepsilon`-moves (concatenation links
    exit to entry; ``a|b`` branches; ``a*`` loops back and may skip)."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a str, got {show(pattern)}")
    tree = _Parser(pattern).parse()
    eps: list[list[int]] = []
    edges: list[list[tuple[frozenset[int], int]]] = []

    def state() -> int:
        eps.append([])
        edges.append([])
        return len(eps) - 1

    def build(node: tuple) -> tuple[int, int]:
        kind = node[0]
        s, e = state(), state()
        if kind == "empty":
            eps[s].append(e)
        elif kind == "set":
            edges[s].append((node[1], e))
        elif kind == "cat":
            a, b = build(node[1]), build(node[2])
            eps[s].append(a[0])
            eps[a[1]].append(b[0])
            eps[b[1]].append(e)
        elif kind == "alt":
            for sub in node[1:]:
                a = build(sub)
                eps[s].append(a[0])
                eps[a[1]].append(e)
        else:  # star, plus, opt
            a = build(node[1])
            eps[s].append(a[0])
            eps[a[1]].append(e)
            if kind in ("star", "opt"):
                eps[s].append(e)  # skip
            if kind in ("star", "plus"):
                eps[a[1]].append(a[0])  # repeat
        return s, e

    start, accept = build(tree)
    return NFA(eps, edges, start, accept)


# -------------------------------------------------------------------------------- DFA
@dataclass
class DFA:
    """A deterministic automaton over bytes: ``transitions[s, b]`` is the next state or -1
    (dead: no match can follow), ``accepting[s]`` whether a match may end in ``s``; the
    start state is 0. Every state can still reach an accepting one."""

    transitions: np.ndarray
    accepting: np.ndarray

    def __post_init__(self) -> None:
        t = self.transitions
        ok = isinstance(t, np.ndarray) and t.ndim == 2 and t.shape[1] == 256 and len(t) > 0
        if not ok or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"transitions must be an integer array (n_states, 256), got {show(t)}")
        if t.min() < -1 or t.max() >= len(t):
            raise ValueError(f"transitions must hold states in [-1, {len(t)}), got {show(t)}")
        a = self.accepting
        if not isinstance(a, np.ndarray) or a.dtype != np.bool_ or a.shape != (len(t),):
            raise ValueError(f"accepting must be a bool array of shape ({len(t)},), got {show(a)}")

    @property
    def n_states(self) -> int:
        """The number of (live) states."""
        return int(self.transitions.shape[0])

    def walk(self, data: bytes | str, state: int = 0) -> int:
        """The state after reading ``data`` (str: its UTF-8 bytes) from ``state``, or -1."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray):
            raise ValueError(f"data must be bytes or str, got {show(data)}")
        state = check_int("state", state, 0, self.n_states - 1)
        for b in data:
            state = int(self.transitions[state, b])
            if state < 0:
                return -1
        return state

    def fullmatch(self, text: bytes | str) -> bool:
        """Whether the whole of ``text`` is in the pattern's language."""
        s = self.walk(text)
        return s >= 0 and bool(self.accepting[s])


def _closure(nfa: NFA, states: set[int]) -> frozenset[int]:
    stack, seen = list(states), set(states)
    while stack:
        for r in nfa.eps[stack.pop()]:
            if r not in seen:
                seen.add(r)
                stack.append(r)
    return frozenset(seen)


def compile_regex(pattern: str) -> DFA:
    """The pattern's DFA by the subset construction on :func:`thompson_nfa`: a DFA state is
    the :math:`\\varepsilon`-closure of a set of NFA states, and its move on byte ``b`` is
    the closure of the NFA states reached by ``b``. Dead states are then removed."""
    nfa = thompson_nfa(pattern)
    start = _closure(nfa, {nfa.start})
    index, order, rows = {start: 0}, [start], []
    while len(rows) < len(order):
        current = order[len(rows)]
        row = np.full(256, -1, dtype=np.int64)
        moves: dict[int, set[int]] = {}
        for q in current:
            for chars, r in nfa.edges[q]:
                for b in chars:
                    moves.setdefault(b, set()).add(r)
        for b, targets in moves.items():
            nxt = _closure(nfa, targets)
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            row[b] = index[nxt]
        rows.append(row)
    trans = np.stack(rows)
    accepting = np.array([nfa.accept in s for s in order])
    # keep the states from which an accepting state is reachable
    live = accepting.copy()
    while True:
        grow = live | ((trans >= 0) & live[np.maximum(trans, 0)]).any(1)
        if (grow == live).all():
            break
        live = grow
    if not live[0]:
        raise ValueError(f"pattern {pattern!r} matches no string")
    new_id = np.cumsum(live) - 1
    trans = trans[live]
    trans = np.where((trans >= 0) & live[np.maximum(trans, 0)], new_id[np.maximum(trans, 0)], -1)
    return DFA(trans, accepting[live])


# --------------------------------------------------------------------- the vocabulary
def token_transitions(dfa: DFA, token_bytes: Sequence[bytes]) -> np.ndarray:
    """``(n_states, V)``: the state after token ``v``'s bytes from state ``s``, or -1 when the
    walk dies. A token with no bytes (a special token) gets -1 everywhere. Vectorised over
    all states and tokens, one byte position at a time."""
    check_type("dfa", dfa, DFA, "a DFA")
    if isinstance(token_bytes, bytes | str) or not all(isinstance(t, bytes) for t in token_bytes):
        raise ValueError(f"token_bytes must be a sequence of bytes, got {show(token_bytes)}")
    V = len(token_bytes)
    if V == 0:
        raise ValueError("token_bytes must hold at least one token")
    width = max(len(t) for t in token_bytes)
    padded = np.full((V, max(width, 1)), -1, dtype=np.int64)
    for v, t in enumerate(token_bytes):
        padded[v, : len(t)] = np.frombuffer(t, dtype=np.uint8)
    state = np.repeat(np.arange(dfa.n_states)[:, None], V, axis=1)
    state[:, [len(t) == 0 for t in token_bytes]] = -1
    for j in range(width):
        b = padded[:, j]
        step = b >= 0  # tokens that still have a byte at position j
        alive = (state >= 0) & step[None, :]
        nxt = dfa.transitions[np.maximum(state, 0), np.maximum(b, 0)[None, :]]
        state = np.where(alive, nxt, state)
    return state


class RegexConstraint:
    r"""A logits processor that keeps the generated text inside a regular language.

    The text generated after the first ``prompt_length`` tokens of ``input_ids`` is walked
    through the lifted DFA; in state :math:`s`, token :math:`v` keeps its score iff its
    bytes stay alive, and ``eos_token_id`` (whose bytes are ignored) iff :math:`s` is
    accepting; every other score becomes :math:`-\infty`. After the end-of-sequence token
    only ``eos_token_id`` is allowed (the padding of a finished row). The processed
    distribution is therefore the model's, restricted to the allowed tokens and
    renormalised.

    Args:
        pattern: a regular expression of the supported subset (module docstring) or a
            compiled :class:`DFA`.
        token_bytes: the bytes of each token id, ``[tokenizer.token_bytes(i) for i in
            range(V)]``.
        eos_token_id: the token that ends a sequence.
        prompt_length: the number of prompt tokens at the start of ``input_ids``.
    """

    def __init__(
        self,
        pattern: str | DFA,
        token_bytes: Sequence[bytes],
        eos_token_id: int,
        prompt_length: int,
    ) -> None:
        self.dfa = pattern if isinstance(pattern, DFA) else compile_regex(pattern)
        table = token_transitions(self.dfa, token_bytes)
        V = table.shape[1]
        self.eos_token_id = check_int("eos_token_id", eos_token_id, 0, V - 1)
        self.prompt_length = check_int("prompt_length", prompt_length, 0)
        table[:, self.eos_token_id] = -1  # the end token's own bytes do not count
        S = self.dfa.n_states
        self.done = S  # an extra state: after the end token
        full = np.full((S + 1, V), -1, dtype=np.int64)
        full[:S] = table
        full[: S + 1, self.eos_token_id] = np.r_[np.where(self.dfa.accepting, S, -1), S]
        self.table = torch.from_numpy(full)
        allowed = full >= 0
        self._allowed = torch.from_numpy(allowed)

    @property
    def vocab_size(self) -> int:
        """V, the number of tokens."""
        return int(self.table.shape[1])

    def states(self, input_ids: Tensor) -> Tensor:
        """``(B,)`` the automaton's state after each row's generated tokens (``done`` after
        the end token); raises if a row has already left the language."""
        from llmbook._validate import check_int_ids

        ids = check_int_ids("input_ids", input_ids, ndim=2, high=self.vocab_size)
        if ids.shape[1] < self.prompt_length:
            raise ValueError(
                f"input_ids has {ids.shape[1]} tokens, fewer than prompt_length="
                f"{self.prompt_length}"
            )
        state = torch.zeros(ids.shape[0], dtype=torch.long)
        for j, tok in enumerate(ids[:, self.prompt_length :].T.cpu()):
            state = self.table[state, tok]
            if bool((state < 0).any()):
                row = int((state < 0).nonzero()[0, 0])
                raise ValueError(
                    f"input_ids row {row} leaves the pattern's language at generated token "
                    f"{j} (id {int(tok[row])}); is prompt_length right?"
                )
        return state

    def allowed(self, input_ids: Tensor) -> Tensor:
        """``(B, V)`` bool: the tokens that may come next in each row."""
        return self._allowed[self.states(input_ids)]

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        from llmbook.decoding import _check_inputs

        input_ids, scores = _check_inputs(input_ids, scores)
        if scores.shape[1] != self.vocab_size:
            raise ValueError(
                f"scores must have V={self.vocab_size} columns (the token_bytes given), got "
                f"{scores.shape[1]}"
            )
        mask = self.allowed(input_ids).to(scores.device)
        return scores.masked_fill(~mask, -math.inf)


__all__ = [
    "ASCII",
    "DFA",
    "NFA",
    "RegexConstraint",
    "compile_regex",
    "thompson_nfa",
    "token_transitions",
]
