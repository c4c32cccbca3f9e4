"""Tests of llmbook.constrained: regular expressions as automata over a vocabulary
(Chapter 12).

The DFA is checked against Python's ``re.fullmatch(pattern, s, re.ASCII)`` on random
strings of two kinds: uniform strings over a small alphabet (mostly non-matches) and
strings produced by random walks on the DFA itself, then mutated (matches and near
misses). The decisions are exact (booleans). The constrained distribution is compared
with the unconstrained softmax restricted to the allowed tokens and renormalised, in
float64, to 1e-12 (two softmaxes over the same finite scores, rounding only); every
generated output, sampled or from beam search, must fullmatch the pattern.
"""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
import torch

from llmbook.constrained import (
    DFA,
    NFA,
    RegexConstraint,
    compile_regex,
    thompson_nfa,
    token_transitions,
)
from llmbook.decoding import Temperature, beam_search, generate, probabilities
from llmbook.gpt import GPT, GPTConfig

PATTERNS = [
    r"a|b",
    r"(ab)*c",
    r"[A-Z][a-z]+: [a-z ]+[.!?]",
    r"\d+(\.\d+)?",
    r"(a|b)*abb",
    r"x?y+z*",
    r"[^abc]+",
    r"(ROMEO|JULIET):\n[A-Z][a-z ,']*[.!?]",
    r"a.b",
    r"(a|)b",
    r"\w+\s\w+",
    r"[a\-z]+",
    r"()",
    r"(a*)*b?",
    r"(ab|ba)+(c|\.)",
]
ALPHABET = "abcxyzAZ019 .!?:\n,'-"


def random_walk(dfa: DFA, rng: random.Random, max_len: int = 40) -> str:
    """A string read off a random walk from the start state: stop in an accepting state
    with probability 1/3, so most walks are matches."""
    s, out = 0, []
    for _ in range(max_len):
        if dfa.accepting[s] and rng.random() < 1 / 3:
            break
        moves = np.flatnonzero(dfa.transitions[s] >= 0)
        if len(moves) == 0:
            break
        b = int(rng.choice(list(moves)))
        out.append(chr(b))
        s = int(dfa.transitions[s, b])
    return "".join(out)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_dfa_agrees_with_python_re_on_random_strings(pattern):
    dfa = compile_regex(pattern)
    rng = random.Random(0)
    matches = 0
    for _ in range(1500):
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
        assert dfa.fullmatch(s) == bool(re.fullmatch(pattern, s, re.ASCII)), repr(s)
        w = random_walk(dfa, rng)
        if w and rng.random() < 0.5:  # a mutation: one character replaced
            i = rng.randrange(len(w))
            w = w[:i] + rng.choice(ALPHABET) + w[i + 1 :]
        expected = bool(re.fullmatch(pattern, w, re.ASCII))
        assert dfa.fullmatch(w) == expected, repr(w)
        matches += expected
    assert matches > 300  # the walks reach the language


def test_dead_states_are_removed_and_non_ascii_bytes_are_refused():
    dfa = compile_regex(r"(ab|ac)d")
    assert dfa.walk("ab") >= 0 and dfa.walk("abx") == -1 and dfa.walk("é") == -1
    # from every state an accepting state is reachable
    reach = dfa.accepting.copy()
    for _ in range(dfa.n_states):
        reach |= ((dfa.transitions >= 0) & reach[np.maximum(dfa.transitions, 0)]).any(1)
    assert reach.all()


def test_thompson_nfa_has_one_start_and_one_accept():
    nfa = thompson_nfa("a(b|c)*")
    assert isinstance(nfa, NFA) and nfa.start != nfa.accept
    assert nfa.eps[nfa.accept] == [] and nfa.edges[nfa.accept] == []


def test_token_transitions_walk_each_tokens_bytes():
    dfa = compile_regex(r"(ab|c)+\.")
    tokens = [b"", b"a", b"b", b"ab", b"abc", b"c.", b"ba", b".", b"cab."]
    table = token_transitions(dfa, tokens)
    for s in range(dfa.n_states):
        for v, t in enumerate(tokens):
            expected = dfa.walk(t, s) if t else -1
            assert table[s, v] == expected, (s, t)


# --------------------------------------------------------------- as a logits processor
TOKENS = [b"", b"a", b"b", b"c", b" ", b".", b"ab", b"ba", b"abc", b"cc", b" a", b"c."]
TOKENS += [b"x", b"b.", b"aa", b"\n"]
V = len(TOKENS)
EOS = 0
PATTERN = r"(ab|c)+( a+)?\."


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, d_model=16)
    return GPT(cfg).double().eval()


def decoded(row: torch.Tensor, T: int) -> str:
    out = b""
    for t in row[T:].tolist():
        if t == EOS:
            break
        out += TOKENS[t]
    return out.decode()


def test_every_sampled_and_beam_output_matches_the_pattern():
    model = tiny_model()
    ids = torch.tensor([[3, 5]]).repeat(64, 1)
    con = RegexConstraint(PATTERN, TOKENS, EOS, prompt_length=2)
    out = generate(
        model,
        ids,
        25,
        [Temperature(1.5), con],
        generator=torch.Generator().manual_seed(0),
        eos_token_id=EOS,
    )
    ended = [row for row in out if EOS in row[2:].tolist()]
    assert len(ended) > 50
    for row in ended:
        assert re.fullmatch(PATTERN, decoded(row, 2), re.ASCII), decoded(row, 2)

    def favour_the_end(ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z + 4.0 * (torch.arange(V) == EOS) + 4.0 * (torch.arange(V) == 5)

    beams = beam_search(
        model,
        ids[:1],
        20,
        4,
        num_return_sequences=4,
        eos_token_id=EOS,
        processors=[favour_the_end, con],
    )
    finished = [row for row in beams.sequences if EOS in row[2:].tolist()]
    assert finished  # (the others were cut at max_new_tokens)
    for row in finished:
        assert re.fullmatch(PATTERN, decoded(row, 2), re.ASCII)


def test_the_constrained_distribution_is_the_renormalised_one():
    model = tiny_model(1)
    con = RegexConstraint(PATTERN, TOKENS, EOS, prompt_length=1)
    for prefix in ([], [1], [6, 3], [3, 10], [8, 1]):  # "", "a", "abc", "c a", "abca"
        ids = torch.tensor([[2, *prefix]])
        with torch.no_grad():
            z = model(ids)[0][:, -1]
        allowed = con.allowed(ids)[0]
        p = torch.softmax(z, -1)[0]
        expected = torch.where(allowed, p, 0.0) / p[allowed].sum()
        got = probabilities(con(ids, z))[0]
        assert torch.allclose(got, expected, rtol=0, atol=1e-12)
        text = b"".join(TOKENS[t] for t in prefix).decode()
        for v, t in enumerate(TOKENS):
            if v == EOS:
                ok = bool(re.fullmatch(PATTERN, text, re.ASCII))
            else:  # the token keeps a completion possible (by brute force below)
                ok = bool(t) and can_complete(text + t.decode())
            assert bool(allowed[v]) == ok, (text, t)


def can_complete(text: str) -> bool:
    """Is ``text`` a prefix of some match? Brute force over short suffixes."""
    suffixes = [""]
    for _ in range(4):
        suffixes += [s + c for s in suffixes for c in "abc ." if len(s) < 4]
        suffixes = list(dict.fromkeys(suffixes))
    return any(re.fullmatch(PATTERN, text + s, re.ASCII) for s in suffixes)


def test_after_the_end_token_only_the_end_token_is_allowed():
    con = RegexConstraint(PATTERN, TOKENS, EOS, prompt_length=0)
    ids = torch.tensor([[3, 5, EOS, EOS]])  # "c." then the end
    allowed = con.allowed(ids)[0]
    assert allowed.tolist() == [v == EOS for v in range(V)]
    with pytest.raises(ValueError, match="leaves the pattern"):
        con.allowed(torch.tensor([[12]]))  # "x" is never allowed


BAD = [
    (lambda: compile_regex("a{2}"), "pattern"),
    (lambda: compile_regex("(ab"), r"missing '\)'"),
    (lambda: compile_regex("*a"), "nothing to repeat"),
    (lambda: compile_regex("[z-a]"), "range"),
    (lambda: compile_regex("é"), "non-ASCII"),
    (lambda: compile_regex("[ab"), "missing ']'"),
    (lambda: compile_regex("a\\"), "dangling"),
    (lambda: compile_regex(5), "pattern"),
    (lambda: token_transitions(compile_regex("a"), b"ab"), "token_bytes"),
    (lambda: RegexConstraint("a", TOKENS, V, 0), "eos_token_id"),
    (lambda: RegexConstraint("a", TOKENS, 0, -1), "prompt_length"),
    (
        lambda: RegexConstraint("a", TOKENS, 0, 3)(torch.zeros(1, 2).long(), torch.zeros(1, V)),
        "prompt_length",
    ),
    (
        lambda: RegexConstraint("a", TOKENS, 0, 0)(torch.zeros(1, 2).long(), torch.zeros(1, 3)),
        "V=16",
    ),
    (lambda: DFA(np.zeros((1, 255), dtype=np.int64), np.zeros(1, bool)), "transitions"),
    (lambda: DFA(np.zeros((1, 256), dtype=np.int64), np.zeros(2, bool)), "accepting"),
]


@pytest.mark.parametrize(("call", "match"), BAD)
def test_bad_input_is_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_scores_masked_by_the_constraint_are_minus_infinity():
    con = RegexConstraint(PATTERN, TOKENS, EOS, prompt_length=0)
    ids = torch.zeros(1, 0, dtype=torch.long)
    out = con(ids, torch.zeros(1, V))
    assert set(out[0].tolist()) == {0.0, -math.inf}
