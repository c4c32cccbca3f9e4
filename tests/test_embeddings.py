"""Tests of llmbook.embeddings: word tokens, co-occurrence counts, PPMI, SVD, analogies.

Tolerances: everything is float64 on matrices of at most a few hundred entries, so
identities hold to ~1e-12; 1e-9 leaves room for LAPACK's round-off and still fails on any
real error (a transposed matrix, a missing normalisation or an off-by-one window).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook import embeddings as emb


def test_words_drops_speaker_lines_and_keeps_apostrophes():
    text = "ROMEO:\nBut soft! 'Tis the east, o'er the sea.\n\nKING HENRY V:\nOnce more; unto-the"
    text += " breach"
    assert emb.words(text) == [
        *["but", "soft", "tis", "the", "east", "o'er", "the", "sea"],
        *["once", "more", "unto", "the", "breach"],
    ]
    kept = emb.words(text, drop_speakers=False)
    assert kept[0] == "romeo" and kept[9:12] == ["king", "henry", "v"]
    with pytest.raises(ValueError, match="text"):
        emb.words(["not", "a", "string"])


def test_build_vocab_orders_by_frequency_then_alphabet():
    tokens = "b a c a b d a".split()
    assert emb.build_vocab(tokens) == ["a", "b", "c", "d"]
    assert emb.build_vocab(tokens, min_count=2) == ["a", "b"]
    with pytest.raises(ValueError, match="min_count"):
        emb.build_vocab(tokens, min_count=0)
    with pytest.raises(ValueError, match="empty"):
        emb.build_vocab(tokens, min_count=9)


def test_cooccurrence_known_values():
    c = emb.cooccurrence_matrix(np.array([0, 1, 2, 0]), 3, window=1)
    expected = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)  # 0-1, 1-2, 2-0
    np.testing.assert_array_equal(c, expected)
    c2 = emb.cooccurrence_matrix(np.array([0, 1, 2, 0]), 3, window=2)
    # adds the distance-2 pairs (0, 2) and (1, 0)
    np.testing.assert_array_equal(c2, expected + np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]]))


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.integers(0, 5), min_size=0, max_size=40), window=st.integers(1, 6))
def test_cooccurrence_matches_a_double_loop(ids, window):
    ref = np.zeros((6, 6))
    for t, w in enumerate(ids):
        for u in range(max(0, t - window), min(len(ids), t + window + 1)):
            if u != t:
                ref[w, ids[u]] += 1
    got = emb.cooccurrence_matrix(np.array(ids, dtype=np.int64), 6, window)
    np.testing.assert_array_equal(got, ref)


def test_ppmi_known_values():
    counts = np.array([[4.0, 0.0], [2.0, 2.0]])
    # alpha = 1: PMI(w, c) = log(#(w,c) * N / (#(w) #(c))), N = 8
    got = emb.ppmi(counts, alpha=1.0)
    expected = np.array(
        [[max(0, math.log(4 * 8 / (4 * 6))), 0.0], [max(0, math.log(2 * 8 / (4 * 6))), 0.0]]
    )
    expected[1, 1] = max(0, math.log(2 * 8 / (4 * 2)))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # alpha = 0.75 smooths the context distribution: P(c) ∝ #(c)^0.75
    p_ctx = np.array([6.0, 2.0]) ** 0.75
    p_ctx /= p_ctx.sum()
    smoothed = emb.ppmi(counts)
    assert smoothed[1, 1] == pytest.approx(max(0, math.log((2 / 8) / ((4 / 8) * p_ctx[1]))))
    assert smoothed[0, 0] == pytest.approx(max(0, math.log((4 / 8) / ((4 / 8) * p_ctx[0]))))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_ppmi_of_independent_counts_is_zero_and_never_negative(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 20, size=5), rng.integers(1, 20, size=7)
    independent = np.outer(rows, cols).astype(float)  # P(w, c) = P(w) P(c) exactly
    np.testing.assert_allclose(emb.ppmi(independent, alpha=1.0), 0.0, atol=1e-12)
    noisy = rng.poisson(3.0, size=(6, 6)).astype(float)
    noisy[0] += 1  # never all zero
    m = emb.ppmi(noisy)
    assert (m >= 0).all() and (m[noisy == 0] == 0).all() and np.isfinite(m).all()


def test_svd_embeddings_factorise_the_matrix():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 4))
    psd = a @ a.T  # symmetric, rank 4: M = U S U^T
    half = emb.svd_embeddings(psd, 4, power=0.5)
    np.testing.assert_allclose(half @ half.T, psd, atol=1e-9)  # W W^T = U S U^T = M
    full = emb.svd_embeddings(psd, 4, power=1.0)
    np.testing.assert_allclose(full @ full.T, psd @ psd.T, atol=1e-8)  # U S^2 U^T = M M^T
    u, s, _ = np.linalg.svd(psd)
    for j in range(4):  # each column is ±(the j-th singular vector) × sqrt(sigma_j)
        assert abs(abs(half[:, j] @ u[:, j]) - math.sqrt(s[j])) < 1e-9
        assert half[np.abs(half[:, j]).argmax(), j] > 0  # the sign convention
    with pytest.raises(ValueError, match="dim"):
        emb.svd_embeddings(psd, 31)
    with pytest.raises(ValueError, match="power"):
        emb.svd_embeddings(psd, 2, power=2)


# Three axes: royalty, gender, and something unrelated.
TOY_VOCAB = ["man", "woman", "king", "queen", "apple"]
TOY = np.array([[0, 1, 0], [0, -1, 0], [1, 1, 0], [1, -1, 0], [0, 0, 1]], dtype=float)


def test_analogy_on_a_toy_space():
    best = emb.analogy(TOY, TOY_VOCAB, "man", "king", "woman", k=2)
    assert best[0][0] == "queen" and best[1][0] == "apple"
    assert emb.analogy_rank(TOY, TOY_VOCAB, "man", "king", "woman", "queen") == 1
    unit = TOY / np.linalg.norm(TOY, axis=1, keepdims=True)
    target = unit[2] - unit[0] + unit[1]
    np.testing.assert_allclose(
        emb.analogy_scores(TOY, TOY_VOCAB, "man", "king", "woman"),
        unit @ target / np.linalg.norm(target),
        atol=1e-12,
    )
    # with the inputs allowed, the answer is still "queen" here, and "woman" comes next
    incl = emb.analogy(TOY, TOY_VOCAB, "man", "king", "woman", k=2, exclude_inputs=False)
    assert [w for w, _ in incl] == ["queen", "woman"]
    assert emb.nearest_neighbours(TOY, TOY_VOCAB, "king", k=1)[0][0] in ("man", "queen")
    assert emb.nearest_neighbours(TOY, TOY_VOCAB, "apple", k=4)[-1][1] == pytest.approx(0.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_analogy_rank_agrees_with_the_ranked_list(seed):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(12)]
    vectors = rng.standard_normal((12, 5))
    ranked = emb.analogy(vectors, vocab, "w0", "w1", "w2", k=9)
    assert len(ranked) == 9 and not {"w0", "w1", "w2"} & {w for w, _ in ranked}
    for r, (word, _) in enumerate(ranked, start=1):
        assert emb.analogy_rank(vectors, vocab, "w0", "w1", "w2", word) == r
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    neighbours = emb.nearest_neighbours(vectors, vocab, "w3", k=11)
    assert "w3" not in {w for w, _ in neighbours} and len(neighbours) == 11


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: emb.cooccurrence_matrix(np.array([0, 1]), 2, window=0), "window"),
        (lambda: emb.cooccurrence_matrix(np.array([0, 5]), 2, window=1), "ids"),
        (lambda: emb.cooccurrence_matrix(np.array([0.5, 1.0]), 2, window=1), "ids"),
        (lambda: emb.cooccurrence_matrix(np.array([0, 1]), 0, window=1), "vocab_size"),
        (lambda: emb.ppmi(np.array([[1.0, -1.0], [0.0, 1.0]])), "counts"),
        (lambda: emb.ppmi(np.zeros((2, 2))), "counts"),
        (lambda: emb.ppmi(np.ones((2, 2)), alpha=0.0), "alpha"),
        (lambda: emb.analogy(TOY, TOY_VOCAB, "man", "king", "girl"), "c"),
        (lambda: emb.analogy(TOY, TOY_VOCAB, "man", "king", "woman", k=0), "k"),
        (lambda: emb.analogy_rank(TOY, TOY_VOCAB, "man", "king", "woman", "man"), "target"),
        (lambda: emb.nearest_neighbours(TOY, TOY_VOCAB[:4], "man"), "vocab"),
        (lambda: emb.nearest_neighbours(TOY, TOY_VOCAB, "prince"), "word"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
