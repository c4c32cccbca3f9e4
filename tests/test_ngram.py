"""Tests of llmbook.ngram: counts, normalisation, the MLE, smoothing limits, bad input."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook.ngram import NGramModel

TEXT = "the cat sat on the mat. the dog sat on the log."


@pytest.mark.parametrize("smoothing", ["add_k", "kneser_ney"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_conditional_sums_to_one(smoothing, n):
    m = NGramModel(n, smoothing=smoothing, k=0.5).fit(TEXT)
    for ctx in ["", "t", "th", "the ", "on the", " sat", "ggg"]:  # "ggg": never seen
        p = m.next_distribution(ctx)
        assert p.shape == (m.vocab_size,)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (p > 0).all()


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(alphabet="abcd ", min_size=1, max_size=60),
    n=st.integers(1, 4),
    smoothing=st.sampled_from(["add_k", "kneser_ney"]),
    ctx=st.text(alphabet="abcd ", max_size=5),
)
def test_normalisation_property(text, n, smoothing, ctx):
    m = NGramModel(n, smoothing=smoothing, k=0.1, vocab=list("abcd ")).fit(text)
    p = m.next_distribution(ctx)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (p > 0).all()


def test_unsmoothed_mle_is_relative_frequency():
    m = NGramModel(2, smoothing="add_k", k=0.0).fit(TEXT)
    pairs = Counter(itertools.pairwise(TEXT))
    after_t = Counter(b for a, b in pairs.elements() if a == "t")
    p = m.next_distribution("t")
    for ch, count in after_t.items():
        assert p[m.vocab.index(ch)] == pytest.approx(count / sum(after_t.values()))
    assert p[m.vocab.index("c")] == 0.0  # never seen after "t": the MLE gives zero


def test_unigram_add_one_formula():
    m = NGramModel(1, smoothing="add_k", k=1.0).fit(TEXT)
    counts = Counter(TEXT)
    V = len(counts)
    p = m.next_distribution("")
    for ch, c in counts.items():
        assert p[m.vocab.index(ch)] == pytest.approx((c + 1) / (len(TEXT) + V))


def test_chain_rule_and_perplexity_consistency():
    m = NGramModel(3).fit(TEXT)
    lp = m.logprobs("the cat")
    # chain rule: log p(x_1:T) is the sum of per-token conditionals
    assert m.logprob("the cat") == pytest.approx(lp.sum())
    manual = 0.0
    for t in range(len("the cat")):
        manual += math.log(m.next_distribution("the cat"[:t])["the cat"[t] == np.array(m.vocab)][0])
    assert manual == pytest.approx(lp.sum())
    assert m.perplexity("the cat") == pytest.approx(math.exp(-lp.mean()))
    assert m.cross_entropy("the cat", base=2) == pytest.approx(-lp.mean() / math.log(2))


def test_kneser_ney_continuation_counts():
    # "Francisco" is frequent but always after the same word: KN's unigram level counts
    # distinct left contexts, not occurrences.
    words = ("san francisco " * 20 + "the cat the dog a cat a dog my cat my dog").split()
    m = NGramModel(2, smoothing="kneser_ney").fit(words)
    p_uni = m._cont[0]  # continuation counts of the unigram level
    cont = dict(zip(p_uni.keys.tolist(), p_uni.counts.tolist(), strict=True))
    assert cont[m.vocab.index("francisco")] == 1  # only ever after "san"
    assert cont[m.vocab.index("cat")] == 3  # after "the", "a", "my"
    # so in an unseen context "cat" is more likely than the (more frequent) "francisco"
    p = m.next_distribution(["dog"])
    assert p[m.vocab.index("cat")] > p[m.vocab.index("francisco")]


def test_higher_order_fits_training_text_better():
    text = TEXT * 3
    train_ppl = [
        NGramModel(n, smoothing="add_k", k=0.01).fit(text).perplexity(text) for n in (1, 2, 3, 4)
    ]
    assert all(a > b for a, b in itertools.pairwise(train_ppl))


def test_words_and_sampling_are_reproducible():
    words = TEXT.split()
    m = NGramModel(2).fit(words)
    a = m.sample(10, np.random.default_rng(1), prompt=["the"])
    b = m.sample(10, np.random.default_rng(1), prompt=["the"])
    assert a == b and isinstance(a, list) and len(a) == 11 and a[0] == "the"
    s = NGramModel(3).fit(TEXT).sample(30, np.random.default_rng(0), prompt="the")
    assert isinstance(s, str) and len(s) == 33 and set(s) <= set(TEXT)


def test_prob_batch_matches_next_distribution():
    m = NGramModel(3).fit(TEXT)
    ids = m.encode("on the")
    ctx = np.array([[-1, -1], [-1, ids[0]], ids[:2]])
    full = m.prob(ctx, np.tile(np.arange(m.vocab_size), (3, 1)))
    np.testing.assert_allclose(full[0], m.next_distribution(""))
    np.testing.assert_allclose(full[1], m.next_distribution("o"))
    np.testing.assert_allclose(full[2], m.next_distribution("on"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: NGramModel(0), "n must be"),
        (lambda: NGramModel(2.0), "n must be"),
        (lambda: NGramModel(2, smoothing="laplace"), "smoothing must be"),
        (lambda: NGramModel(2, k=-1), "k must be"),
        (lambda: NGramModel(2, vocab=[]), "vocab must not be empty"),
        (lambda: NGramModel(2, vocab=["a", "a"]), "duplicates"),
        (lambda: NGramModel(2).fit(""), "empty"),
        (lambda: NGramModel(2).perplexity("abc"), "not fitted"),
        (lambda: NGramModel(2).fit("abc").perplexity("abz"), "'z'"),
        (lambda: NGramModel(2).fit("abc").logprobs(""), "empty"),
        (lambda: NGramModel(2).fit("abc").sample(-1, np.random.default_rng(0)), "length"),
        (lambda: NGramModel(2).fit("abc").sample(3, 0), "rng"),
        (lambda: NGramModel(2).fit("abc").prob([[0]], [7]), r"\[0, 3\)"),
        (lambda: NGramModel(2).fit("abc").prob([[0], [1]], [1]), "targets must be"),
        (lambda: NGramModel(40).fit("abcdefghijklmnopqrstuvwxyz"), "overflow"),
        (lambda: NGramModel(2).fit("abc").cross_entropy("ab", base=1), "base"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
