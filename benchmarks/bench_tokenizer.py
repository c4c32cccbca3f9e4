"""Benchmark: llmbook.tokenizer (byte-level BPE) training and encoding against named peers.

1. Training. Peer: the textbook BPE trainer, :func:`llmbook.tokenizer.learn_merges_naive`,
   which recounts every pair of every distinct chunk before each merge (Sennrich et al.'s
   reference loop). Ours, :func:`llmbook.tokenizer.learn_merges`, updates the counts only in
   the chunks a merge touched. Both learn from the same chunk counts (the regex pre-split
   is shared and timed separately); the merge lists are asserted identical before the
   ratio is printed. The full ``BPETokenizer.train`` time is printed as well.
2. Encoding. Peer: ``tiktoken`` (Rust) built from our merges with ``to_tiktoken()``. Both
   encode the same held-out text; the ids are asserted identical. Ours is timed cold (a
   fresh tokenizer, empty chunk cache) and warm (second pass over the same text).

Times are the best of ``--repeats`` runs, except the naive trainer, which runs once (it
is the slow one). Run: .venv/bin/python benchmarks/bench_tokenizer.py [--chars N] [--vocab V]
"""

from __future__ import annotations

import argparse
import platform
import time

import tiktoken

from llmbook import __version__, corpus
from llmbook.tokenizer import (
    GPT4_PATTERN,
    BPETokenizer,
    chunk_counts,
    learn_merges,
    learn_merges_naive,
)


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="training characters")
    parser.add_argument("--vocab", type=int, default=1024, help="vocabulary size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train = corpus.shakespeare("train")[: args.chars]
    n_merges = args.vocab - 256

    versions = f"tiktoken {tiktoken.__version__}, Python {platform.python_version()}"
    print(f"llmbook {__version__}, {versions}")
    print(f"{platform.machine()}, {platform.processor() or 'cpu'}; GPT-4 split pattern")

    # 1. training
    t_split, counts = best_of(lambda: chunk_counts(train, GPT4_PATTERN), args.repeats)
    t_ours, ours = best_of(lambda: learn_merges(counts, n_merges), args.repeats)
    t_naive, naive = best_of(lambda: learn_merges_naive(counts, n_merges), 1)
    assert ours == naive, "the incremental and the naive trainer disagree"
    t_train, tok = best_of(lambda: BPETokenizer.train(train, args.vocab), args.repeats)
    assert tok.merges == ours
    print(
        f"train {len(train):,} chars, {n_merges} merges, {len(counts):,} distinct chunks;"
        " same merges (both)"
    )
    print(
        f"  merges: ours {t_ours:6.2f} s, naive recount {t_naive:6.2f} s,"
        f" ratio {t_naive / t_ours:5.1f}x"
    )
    print(f"  BPETokenizer.train end to end: {t_train:.2f} s (pre-split {t_split:.2f} s)")

    # 2. encoding, held-out text: the validation and test plays, then pydoc (prose + code)
    enc = tok.to_tiktoken()
    for name, text in [
        ("held-out plays", corpus.shakespeare("validation") + corpus.shakespeare("test")),
        ("pydoc topics", corpus.pydoc_text()),
    ]:
        mb = len(text.encode("utf-8")) / 1e6
        t_tik, ids_tik = best_of(lambda text=text: enc.encode(text), args.repeats)

        def cold(text=text) -> list[int]:
            return BPETokenizer(tok.merges, pattern=tok.pattern).encode(text)

        t_cold, ids_cold = best_of(cold, args.repeats)
        tok.encode(text)  # fill the cache
        t_warm, ids_warm = best_of(lambda text=text: tok.encode(text), args.repeats)
        assert ids_cold == ids_warm == ids_tik, "our ids differ from tiktoken's"
        print(f"encode {name} ({mb:.2f} MB, {len(ids_tik):,} tokens, same ids):")
        print(
            f"  ours cold {mb / t_cold:5.2f} MB/s, warm {mb / t_warm:5.2f} MB/s,"
            f" tiktoken {mb / t_tik:5.2f} MB/s; ratio tiktoken/ours(cold) {t_cold / t_tik:4.1f}x"
        )


if __name__ == "__main__":
    main()
