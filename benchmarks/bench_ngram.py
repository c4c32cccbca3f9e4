"""Benchmark: llmbook.ngram (sorted NumPy count tables) vs the textbook dict-of-counts model.

The peer is the n-gram model as usually written in Python: a ``collections.Counter`` of
n-gram tuples and one of contexts, scored position by position. Both compute the same
add-one 5-gram cross-entropy on the same text (checked to 1e-9 before timing); the ratio
is printed for training and for scoring, measured in this run.

Run: .venv/bin/python benchmarks/bench_ngram.py [--chars N]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections import Counter

import numpy as np

from llmbook import __version__, corpus
from llmbook.ngram import NGramModel


def naive_fit(text: str, n: int) -> tuple[Counter, Counter]:
    grams = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    # c(h) = sum_w c(h w): contexts counted where a next token follows, so p sums to 1
    contexts = Counter(text[i : i + n - 1] for i in range(len(text) - n + 1))
    return grams, contexts


def naive_cross_entropy(grams: Counter, contexts: Counter, text: str, n: int, V: int) -> float:
    """Add-one cross-entropy (nats) of the positions with a full context."""
    total = 0.0
    for i in range(n - 1, len(text)):
        h, w = text[i - n + 1 : i], text[i]
        total -= math.log((grams[h + w] + 1) / (contexts[h] + V))
    return total / (len(text) - n + 1)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="training characters")
    args = parser.parse_args()
    n = 5
    train = corpus.shakespeare("train")[: args.chars]
    valid = corpus.shakespeare("validation")[:200_000]
    vocab = sorted(set(train) | set(valid))
    V = len(vocab)

    ours = NGramModel(n, smoothing="add_k", k=1.0, vocab=vocab).fit(train)
    grams, contexts = naive_fit(train, n)
    # Same quantity from both: positions with a full context only.
    ours_ce = float(-ours.logprobs(valid)[n - 1 :].mean())
    peer_ce = naive_cross_entropy(grams, contexts, valid, n, V)
    assert abs(ours_ce - peer_ce) < 1e-9, (ours_ce, peer_ce)

    t_fit_ours = best_of(lambda: NGramModel(n, smoothing="add_k", vocab=vocab).fit(train))
    t_fit_peer = best_of(lambda: naive_fit(train, n))
    t_score_ours = best_of(lambda: ours.logprobs(valid))
    t_score_peer = best_of(lambda: naive_cross_entropy(grams, contexts, valid, n, V))

    print(f"llmbook {__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"{platform.machine()}, {platform.processor() or 'cpu'}; 5-gram, add-one smoothing")
    print(f"same cross-entropy: {ours_ce:.6f} nats/char (both)")
    print(
        f"fit   {len(train):>9,} chars: ours {t_fit_ours:6.2f} s, dict peer {t_fit_peer:6.2f} s,"
        f" ratio {t_fit_peer / t_fit_ours:5.1f}x"
    )
    print(
        f"score {len(valid):>9,} chars: ours {t_score_ours:6.2f} s,"
        f" dict peer {t_score_peer:6.2f} s,"
        f" ratio {t_score_peer / t_score_ours:5.1f}x"
    )


if __name__ == "__main__":
    main()
