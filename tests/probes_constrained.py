"""Bad-input probes of llmbook.constrained (collected by tests/test_bad_input.py)."""

import numpy as np
import torch

from llmbook import constrained

TOKENS = [b"", b"a", b"b"]


def _constraint():
    return constrained.RegexConstraint("ab", TOKENS, 0, prompt_length=0)


PROBES = [
    ("llmbook.constrained.thompson_nfa", "pattern", lambda t: constrained.thompson_nfa("a{2}")),
    ("llmbook.constrained.compile_regex", "pattern", lambda t: constrained.compile_regex("(a")),
    ("llmbook.constrained.NFA", "start", lambda t: constrained.NFA([[]], [[]], 1, 0)),
    (
        "llmbook.constrained.DFA",
        "transitions",
        lambda t: constrained.DFA(np.zeros((1, 3), dtype=np.int64), np.zeros(1, bool)),
    ),
    (
        "llmbook.constrained.DFA.walk",
        "state",
        lambda t: constrained.compile_regex("a").walk("a", 9),
    ),
    (
        "llmbook.constrained.DFA.fullmatch",
        "data",
        lambda t: constrained.compile_regex("a").fullmatch(3),
    ),
    (
        "llmbook.constrained.token_transitions",
        "token_bytes",
        lambda t: constrained.token_transitions(constrained.compile_regex("a"), ["a"]),
    ),
    (
        "llmbook.constrained.RegexConstraint",
        "eos_token_id",
        lambda t: constrained.RegexConstraint("ab", TOKENS, 3, prompt_length=0),
    ),
    (
        "llmbook.constrained.RegexConstraint.states",
        "input_ids",
        lambda t: _constraint().states(torch.zeros(2)),
    ),
    (
        "llmbook.constrained.RegexConstraint.allowed",
        "input_ids",
        lambda t: _constraint().allowed(torch.tensor([[2]])),
    ),
]
