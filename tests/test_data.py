"""Tests of llmbook.data: documents, exact and near deduplication, quality filter, batches."""

import hashlib
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook import corpus
from llmbook.data import (
    MERSENNE_61,
    TOKEN_MAGIC,
    UNICODE_BITS,
    UNITS,
    MinHasher,
    _affine_mod,
    decontaminate,
    documents,
    estimate_jaccard,
    exact_dedup,
    get_batch,
    jaccard,
    lsh_candidate_pairs,
    lsh_candidate_probability,
    lsh_threshold,
    near_duplicates,
    normalize,
    open_tokens,
    quality_filter,
    quality_scores,
    shingles,
    write_tokens,
)
from llmbook.ngram import NGramModel


def _pair_with_jaccard(tag: str, n_common: int, n_only: int) -> tuple[set[str], set[str]]:
    """Two sets with J = n_common / (n_common + 2 n_only), elements unique to ``tag``."""
    common = {f"{tag} c{i}" for i in range(n_common)}
    return common | {f"{tag} a{i}" for i in range(n_only)}, common | {
        f"{tag} b{i}" for i in range(n_only)
    }


# --------------------------------------------------------------------------- documents
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("stage_directions", [False, True])
def test_documents_tile_the_split(unit, stage_directions):
    docs = documents("validation", unit, stage_directions=stage_directions)
    assert "\n\n".join(docs) + "\n" == corpus.shakespeare(
        "validation", stage_directions=stage_directions
    )
    assert all(d and d == d.strip("\n") for d in docs)
    assert unit != "speech" or all("\n\n" not in d for d in docs)


def test_documents_known_counts_and_boundaries():
    plays = documents("validation", "play")
    scenes = documents("validation", "scene")
    speeches = documents("validation", "speech")
    assert len(plays) == 2 and plays[0] == corpus.play_text("julius-caesar").rstrip("\n")
    # every "### SCENE" heading of the two plays starts one document; act headings none
    n_scene_headings = sum(
        len(re.findall(r"^### SCENE", corpus.play_paths()[n].read_text(), flags=re.M))
        for n in corpus.VALIDATION_PLAYS
    )
    assert len(scenes) == n_scene_headings == 36
    assert scenes[0].startswith("FLAVIUS:\nHence! home") and scenes[1].startswith(
        "CAESAR:\nCalpurnia!"
    )
    assert len(speeches) > len(scenes) > len(plays)
    assert speeches[0].startswith("FLAVIUS:\nHence! home, you idle creatures get you home:\n")
    assert speeches[1] == "First Commoner:\nWhy, sir, a carpenter."
    assert sum(s.count("\n\n") + 1 for s in scenes) == len(speeches)


def test_documents_bad_input():
    with pytest.raises(ValueError, match="unit must be one of"):
        documents("train", "paragraph")
    with pytest.raises(ValueError, match="split must be one of"):
        documents("dev", "speech")


# --------------------------------------------------------------------------- exact dedup
def test_normalize_known_values():
    assert normalize("  To be,\n\tor NOT  to be ") == "to be, or not to be"
    assert normalize("ﬁne ＡＢＣ") == "fine abc"  # NFKC: ligature, full-width letters
    assert normalize("Straße") == "strasse"  # casefold, not lower
    assert normalize(" \n ") == ""
    with pytest.raises(ValueError, match="text must be a string"):
        normalize(b"bytes")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


def test_exact_dedup_handcrafted():
    docs = ["To be, or not", "to BE,  or not", "Other", "other\n", "x", "To be, or not", ""]
    kept, duplicate_of = exact_dedup(docs)
    assert kept == [0, 2, 4, 6]
    assert duplicate_of == {1: 0, 3: 2, 5: 0}
    # the digest is sha256 of the normal form
    key = hashlib.sha256(normalize(docs[1]).encode()).hexdigest()
    assert key == hashlib.sha256(b"to be, or not").hexdigest()


@pytest.mark.parametrize(
    ("docs", "match"),
    [([], "docs is empty"), ("abc", "list of strings"), (["a", 3], r"docs\[1\] must be a string")],
)
def test_exact_dedup_bad_input(docs, match):
    with pytest.raises(ValueError, match=match):
        exact_dedup(docs)


# --------------------------------------------------------------------------- shingles
def test_shingles_known_values():
    assert shingles("A b c d e F", k=3) == {"a b c", "b c d", "c d e", "d e f"}
    assert shingles("Ay, my  LORD.", k=5) == {"ay, my lord."}  # short text: one shingle
    assert shingles("one two", k=2) == {"one two"}
    assert shingles("to be to be to be", k=2) == {"to be", "be to"}
    assert shingles("   ", k=1) == set() and shingles("", k=3) == set()


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=30), k=st.integers(1, 6))
def test_shingles_count_property(words, k):
    s = shingles(" ".join(words), k)
    assert 1 <= len(s) <= max(1, len(words) - k + 1)
    assert all(len(x.split(" ")) == min(k, len(words)) for x in s)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_shingles_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        shingles("a b c", k)


def test_jaccard_known_values():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({"a"}, {"a"}) == 1.0
    assert jaccard(set(), {"a"}) == 0.0
    assert jaccard(set(), frozenset()) == 1.0  # convention: equal sets
    with pytest.raises(ValueError, match="a and b must be sets"):
        jaccard([1, 2], {1})


@settings(max_examples=80, deadline=None)
@given(a=st.sets(st.integers(0, 20)), b=st.sets(st.integers(0, 20)))
def test_jaccard_properties(a, b):
    j = jaccard(a, b)
    assert j == jaccard(b, a)
    assert 0.0 <= j <= 1.0
    assert (j == 1.0) == (a == b)
    assert (j == 0.0) == (a != b and not (a & b))


# --------------------------------------------------------------------------- MinHash
@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(0, MERSENNE_61 - 1),
    x=st.integers(0, MERSENNE_61 - 1),
    b=st.integers(0, MERSENNE_61 - 1),
)
def test_affine_mod_matches_python_integers(a, x, b):
    # 61-bit products overflow uint64: the split multiply must still be exact
    got = _affine_mod(np.array([a], np.uint64), np.array([x], np.uint64), np.array([b], np.uint64))
    assert int(got[0]) == (a * x + b) % MERSENNE_61


def test_affine_mod_extremes():
    top = MERSENNE_61 - 1
    vals = np.array([0, 1, 2**32 - 1, 2**32, top], dtype=np.uint64)
    got = _affine_mod(vals[:, None], vals[None, :], np.uint64(top))
    want = [[(int(u) * int(v) + top) % MERSENNE_61 for v in vals] for u in vals]
    assert got.tolist() == want


def test_signature_matches_brute_force():
    hasher = MinHasher(num_perm=16, seed=3)
    s = {"to be or not", "be or not to", "or not to be"}
    xs = [
        int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") % MERSENNE_61
        for t in s
    ]
    want = [
        min((int(a) * x + int(b)) % MERSENNE_61 for x in xs)
        for a, b in zip(hasher.a, hasher.b, strict=True)
    ]
    assert hasher.signature(s).tolist() == want
    assert hasher.signature(s).dtype == np.uint64
    assert (hasher.a >= 1).all() and (hasher.a < MERSENNE_61).all()


def test_signatures_blocks_equal_single_signatures():
    # sets larger and smaller than a block (1024 shingles at 128 perms), crossing boundaries
    rng = np.random.default_rng(0)
    sets = [{f"w{i}" for i in rng.integers(0, 5000, size)} for size in (3, 2500, 1, 700, 1500)]
    hasher = MinHasher(num_perm=128, seed=0)
    sig = hasher.signatures(sets)
    assert sig.shape == (5, 128)
    for row, s in zip(sig, sets, strict=True):
        want = hasher.hash_values(
            np.array(
                [
                    int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
                    % MERSENNE_61
                    for t in s
                ],
                dtype=np.uint64,
            )
        ).min(axis=0)
        np.testing.assert_array_equal(row, want)
    # reproducible with the seed, different with another seed
    np.testing.assert_array_equal(sig, MinHasher(128, seed=0).signatures(sets))
    assert (MinHasher(128, seed=1).signatures(sets) != sig).mean() > 0.9


def test_estimate_jaccard_is_unbiased_with_binomial_error():
    # 300 pairs with known J in {0.1, ..., 0.9}; each estimate is a mean of K indicators
    # with P = J, so z = (Ĵ - J) / sqrt(J(1-J)/K) is about standard normal.
    K = 128
    hasher = MinHasher(num_perm=K, seed=0)
    truths, pairs = [], []
    for t in range(300):
        n_only = 10 + t % 7
        n_common = [2, 8, 15, 30, 60, 100, 200][t % 7] + t % 3
        a, b = _pair_with_jaccard(f"p{t}", n_common, n_only)
        truths.append(jaccard(a, b))
        pairs += [a, b]
    sig = hasher.signatures(pairs)
    est = estimate_jaccard(sig[0::2], sig[1::2])
    J = np.array(truths)
    se = np.sqrt(J * (1 - J) / K)
    z = (est - J) / se
    assert abs(np.mean(est - J)) < 3 * np.sqrt(np.sum(J * (1 - J) / K)) / len(J)  # unbiased
    assert np.mean(np.abs(z) > 3) < 0.02  # expected 0.3 %
    assert 0.8 < np.std(z) < 1.2  # binomial spread: K independent hash functions


def test_estimate_jaccard_known_values_and_shapes():
    assert estimate_jaccard(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    rows = estimate_jaccard(np.array([[1, 2], [3, 4]]), np.array([[1, 0], [3, 4]]))
    np.testing.assert_array_equal(rows, [0.5, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        estimate_jaccard(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="same shape"):
        estimate_jaccard(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MinHasher(num_perm=0), "num_perm must be a positive integer"),
        (lambda: MinHasher(seed=-1), "seed must be"),
        (lambda: MinHasher().signature(set()), "empty set"),
        (lambda: MinHasher().signatures([{"a"}, set()]), r"shingle_sets\[1\]"),
        (lambda: MinHasher().signatures([]), "shingle_sets is empty"),
        (lambda: MinHasher().signatures({"a"}), "list of sets"),
        (lambda: MinHasher().signatures([{"a", 3}]), "sets of strings"),
        (lambda: MinHasher().hash_values(np.array([2**61 - 1], np.uint64)), "x must be"),
    ],
)
def test_minhash_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- LSH
def test_lsh_probability_known_values():
    assert lsh_candidate_probability(0.0, 20, 5) == 0.0
    assert lsh_candidate_probability(1.0, 20, 5) == 1.0
    assert lsh_candidate_probability(0.3, 1, 1) == pytest.approx(0.3)
    assert lsh_candidate_probability(0.8, 20, 5) == pytest.approx(1 - (1 - 0.8**5) ** 20)
    np.testing.assert_allclose(
        lsh_candidate_probability(np.array([0.2, 0.9]), 16, 8),
        1 - (1 - np.array([0.2, 0.9]) ** 8) ** 16,
    )
    assert lsh_threshold(16, 8) == pytest.approx(16 ** (-1 / 8))
    assert lsh_threshold(20, 5) == pytest.approx(0.549, abs=1e-3)
    for call, match in [
        (lambda: lsh_candidate_probability(1.5, 4, 4), r"s must lie in \[0, 1\]"),
        (lambda: lsh_candidate_probability(0.5, 0, 4), "bands must be"),
        (lambda: lsh_threshold(4, 0), "rows must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


@settings(max_examples=50, deadline=None)
@given(s=st.floats(0, 1), t=st.floats(0, 1), b=st.integers(1, 50), r=st.integers(1, 20))
def test_lsh_probability_is_monotone(s, t, b, r):
    lo, hi = sorted((s, t))
    assert lsh_candidate_probability(lo, b, r) <= lsh_candidate_probability(hi, b, r) + 1e-12


def test_lsh_candidate_pairs_handcrafted():
    sig = np.array(
        [
            [1, 1, 5, 5, 9, 9],
            [1, 1, 6, 6, 8, 8],  # shares band 0 with row 0
            [2, 2, 5, 5, 7, 7],  # shares band 1 with row 0
            [1, 2, 5, 6, 9, 8],  # agrees with others on single rows only: never a candidate
            [3, 3, 3, 3, 3, 3],
        ],
        dtype=np.uint64,
    )
    assert lsh_candidate_pairs(sig, bands=3, rows=2) == {(0, 1), (0, 2)}
    assert lsh_candidate_pairs(sig, bands=1, rows=6) == set()
    assert lsh_candidate_pairs(sig, bands=6, rows=1) >= {(0, 1), (0, 2), (0, 3), (1, 3)}
    with pytest.raises(ValueError, match=r"\(n, bands \* rows\)"):
        lsh_candidate_pairs(sig, bands=4, rows=2)
    with pytest.raises(ValueError, match=r"\(n, bands \* rows\)"):
        lsh_candidate_pairs(sig[0], bands=3, rows=2)


@pytest.mark.parametrize(("bands", "rows"), [(4, 4), (8, 2)])
def test_lsh_candidate_rate_follows_the_s_curve(bands, rows):
    # 300 pairs at each similarity; the fraction that become candidates is a binomial
    # proportion around P(s) = 1 - (1 - s^r)^b: allow 4 standard errors (+0.01 for the
    # small departure of universal hashing from exact min-wise independence).
    n_pairs, sets, truths = 300, [], []
    for s_idx, (n_common, n_only) in enumerate([(4, 8), (10, 5), (20, 5), (40, 5), (90, 5)]):
        for t in range(n_pairs):
            a, b = _pair_with_jaccard(f"s{s_idx}p{t}", n_common, n_only)
            sets += [a, b]
            truths.append(jaccard(a, b))
    sig = MinHasher(num_perm=bands * rows, seed=1).signatures(sets)
    cand = lsh_candidate_pairs(sig, bands, rows)
    hit = np.array([(2 * p, 2 * p + 1) in cand for p in range(len(truths))])
    assert all(j - i == 1 and i % 2 == 0 for i, j in cand)  # only the planted pairs collide
    for s_idx in range(5):
        block = slice(s_idx * n_pairs, (s_idx + 1) * n_pairs)
        s = truths[block.start]
        p = lsh_candidate_probability(s, bands, rows)
        tol = 4 * math.sqrt(p * (1 - p) / n_pairs) + 0.01
        assert abs(hit[block].mean() - p) < tol, (s, hit[block].mean(), p)


# --------------------------------------------------------------------------- near duplicates
@pytest.fixture(scope="module")
def planted():
    """Validation speeches of >= 60 words, and a copy of 30 of them with one word changed."""
    rng = np.random.default_rng(0)
    long = [s for s in documents("validation", "speech") if len(s.split()) >= 60]
    copies = {}
    for i in rng.choice(len(long), 30, replace=False):
        words = long[i].split(" ")
        words[rng.integers(1, len(words))] = "zounds"
        copies[int(i)] = " ".join(words)
    docs = long + list(copies.values())
    planted_pairs = {(i, len(long) + c) for c, i in enumerate(copies)}
    return docs, planted_pairs


def test_near_duplicates_finds_planted_copies(planted):
    docs, planted_pairs = planted
    found = near_duplicates(docs, threshold=0.7, k=5, num_perm=128, bands=32)
    pairs = {(p.i, p.j) for p in found}
    assert planted_pairs <= pairs  # P(miss) = (1 - 0.83^4)^32 < 1e-9 per pair
    for p in found:
        true = jaccard(shingles(docs[p.i]), shingles(docs[p.j]))
        assert p.i < p.j and p.true_jaccard == true
        assert p.estimated_jaccard >= 0.7
        assert abs(p.estimated_jaccard - true) <= 4 * math.sqrt(true * (1 - true) / 128) + 1 / 128
        if (p.i, p.j) in planted_pairs:
            assert true >= 0.8  # one changed word removes at most 5 of >= 56 shingles
    assert len(pairs - planted_pairs) <= 2  # the rest of the validation speeches are distinct


def test_near_duplicates_default_parameters(planted):
    docs, planted_pairs = planted
    found = near_duplicates(docs)  # threshold 0.8, 16 bands of 8 rows
    pairs = {(p.i, p.j) for p in found}
    assert len(pairs & planted_pairs) >= 27  # P(candidate | J >= 0.83) >= 0.99 per pair
    assert found == sorted(found, key=lambda p: (p.i, p.j))
    assert near_duplicates(["a b c d e f", "z y x w v u"], k=2) == []
    # a pair at J = 0.5 is a candidate with 128 bands of 1 row, but kept only below threshold
    half = ["a b c d e f g h i j", "a b c d e f g x y z"]  # 2-shingles: 6 shared of 12
    assert jaccard(shingles(half[0], 2), shingles(half[1], 2)) == 0.5
    low = near_duplicates(half, threshold=0.1, k=2, bands=128)
    assert [(p.i, p.j) for p in low] == [(0, 1)] and low[0].true_jaccard == 0.5
    assert near_duplicates(half, threshold=0.7, k=2, bands=128) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, r"threshold must lie in \(0, 1\]"),
        ({"threshold": 1.2}, r"threshold must lie in \(0, 1\]"),
        ({"num_perm": 100, "bands": 16}, "num_perm=100 must be divisible by bands=16"),
        ({"k": 0}, "k must be"),
        ({"bands": 0}, "bands must be"),
    ],
)
def test_near_duplicates_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        near_duplicates(["a b c", "a b d"], **kwargs)


def test_near_duplicates_bad_docs():
    with pytest.raises(ValueError, match="docs is empty"):
        near_duplicates([])
    with pytest.raises(ValueError, match=r"docs\[1\] is empty after normalising"):
        near_duplicates(["a b", " \n"])


def test_decontaminate_handcrafted():
    passage = "now is the winter of our discontent made glorious summer by this sun of york"
    eval_docs = ["RICHARD:\n" + passage, "Ay, my lord."]
    train_docs = [
        "richard:   NOW is the winter of our discontent made glorious summer by this sun of york",
        "Prologue. " + " ".join(passage.split()[:13]) + " and more words after",  # a 13-gram
        "an entirely different speech with no shared words at all, none, here, friend, sir",
        "AY, my lord.",  # equals a short evaluation document
        "winter of our discontent",  # short, inside a long evaluation document: not flagged
        " ".join(passage.split()[:12]) + " differs",  # shares only 12-grams
    ]
    assert decontaminate(train_docs, eval_docs) == [0, 1, 3]
    assert decontaminate(train_docs, eval_docs, n=12) == [0, 1, 3, 5]
    with pytest.raises(ValueError, match="eval_docs is empty"):
        decontaminate(train_docs, [])
    with pytest.raises(ValueError, match="n must be"):
        decontaminate(train_docs, eval_docs, n=0)


# --------------------------------------------------------------------------- quality
@pytest.fixture(scope="module")
def char_model():
    text = "\n".join(corpus.play_text(n) for n in corpus.split_plays("train")[:6])
    return NGramModel(4).fit(text)


@pytest.mark.parametrize("smoothing", ["kneser_ney", "add_k"])
@pytest.mark.parametrize("n", [1, 3])
def test_quality_scores_equal_cross_entropy_in_bits(smoothing, n):
    text = "the cat sat on the mat. the dog sat on the log."
    model = NGramModel(n, smoothing=smoothing, k=0.5).fit(text)
    docs = ["the cat", "a dog sat on the mat.", "t", "og log cat"]
    want = [model.cross_entropy(d, base=2) for d in docs]
    np.testing.assert_allclose(quality_scores(docs, model), want, rtol=1e-12)


def test_quality_scores_on_the_corpus_match_cross_entropy(char_model):
    docs = documents("validation", "speech")[:200]
    docs = [d for d in docs if set(d) <= set(char_model.vocab)]
    scores = quality_scores(docs, char_model)
    for i in (0, 57, len(docs) - 1):  # spot checks; across the block boundary too
        assert scores[i] == pytest.approx(char_model.cross_entropy(docs[i], base=2), rel=1e-12)


def test_out_of_vocabulary_characters():
    model = NGramModel(2).fit("abab abba")
    ab_bits = 2 * model.cross_entropy("ab", base=2)
    for doc in ["ab{", "a{b", "{ab"]:  # the unknown character is charged and skipped
        assert quality_scores([doc], model)[0] == pytest.approx((ab_bits + UNICODE_BITS) / 3)
    assert quality_scores(["a{b"], model, oov_bits=0.0)[0] == pytest.approx(ab_bits / 3)
    assert quality_scores(["{}"], model)[0] == pytest.approx(UNICODE_BITS)
    with pytest.raises(ValueError, match=r"docs\[1\] has characters outside.*'\{'"):
        quality_scores(["ab", "a{b"], model, oov_bits=None)


def test_quality_ranks_english_above_shuffled_text_and_code(char_model):
    rng = np.random.default_rng(0)
    speech = [s for s in documents("validation", "speech") if len(s) >= 200][:150]
    shuffled = ["".join(rng.permutation(list(s))) for s in speech]
    code = [c for c in corpus.pydoc_prose_and_code()[1].split("\n\n") if len(c) >= 200][:150]
    q_speech, q_shuffled, q_code = (quality_scores(d, char_model) for d in (speech, shuffled, code))
    assert np.median(q_speech) + 1.0 < np.median(q_code)
    assert np.median(q_speech) + 3.0 < np.median(q_shuffled)
    # every speech beats its own characters shuffled (same unigram counts, no order)
    assert (q_speech < q_shuffled).all()
    kept, scores = quality_filter(speech + shuffled + code, char_model, max_bits_per_char=3.0)
    np.testing.assert_array_equal(kept, np.flatnonzero(scores <= 3.0))
    np.testing.assert_allclose(scores, np.concatenate([q_speech, q_shuffled, q_code]))
    n = len(speech)
    kept = np.array(kept)
    assert (kept < n).sum() >= 0.9 * n  # nearly all the English speech is kept
    assert not ((kept >= n) & (kept < 2 * n)).any()  # no shuffled text
    assert ((kept >= 2 * n).sum()) < 0.5 * len(code)  # most of the code is dropped


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: quality_scores([], m), "docs is empty"),
        (lambda m: quality_scores(["ab", ""], m), r"docs\[1\] is empty"),
        (lambda m: quality_scores(["ab"], "model"), "model must be an llmbook.ngram.NGramModel"),
        (lambda m: quality_scores(["ab"], NGramModel(2)), "not fitted"),
        (lambda m: quality_scores(["ab"], NGramModel(1).fit(["ab", "c"])), "character model"),
        (lambda m: quality_scores(["ab"], m, oov_bits=-1.0), "oov_bits must be"),
        (lambda m: quality_filter(["ab"], m, 0.0), "max_bits_per_char must be"),
        (lambda m: quality_filter(["ab"], m, math.inf), "max_bits_per_char must be"),
        (lambda m: quality_filter(["ab"], m, math.nan), "max_bits_per_char must be"),
    ],
)
def test_quality_bad_input(call, match):
    model = NGramModel(2).fit("abab")
    with pytest.raises(ValueError, match=match):
        call(model)


# --------------------------------------------------------------------------- token storage
@pytest.mark.parametrize(("dtype", "high"), [("uint16", 65535), ("uint32", 2**32 - 1)])
def test_write_open_round_trip(tmp_path, dtype, high):
    ids = np.array([0, 1, 7, high, 42])
    path = write_tokens(ids, tmp_path / "sub" / "train.bin", dtype=dtype)
    assert path.stat().st_size == 24 + ids.size * np.dtype(dtype).itemsize  # header + ids
    assert path.read_bytes()[:8] == TOKEN_MAGIC
    data = open_tokens(path, dtype=dtype)
    assert isinstance(data, np.memmap) and data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(data, ids)
    with pytest.raises(ValueError, match="read-only"):
        data[0] = 3
    np.testing.assert_array_equal(open_tokens(write_tokens([5, 6], tmp_path / "l.bin")), [5, 6])
    assert open_tokens(path).dtype == np.dtype(dtype)  # the dtype is read from the header


def test_token_file_header_catches_wrong_dtype_and_old_or_damaged_files(tmp_path):
    ids = np.array([1, 70000, 3], dtype=np.uint32)
    path = write_tokens(ids, tmp_path / "t.bin", dtype="uint32")
    np.testing.assert_array_equal(open_tokens(path), ids)
    with pytest.raises(ValueError, match="holds uint32 ids, but dtype='uint16'"):
        open_tokens(path, "uint16")  # used to read 70000 back as garbage uint16 pairs
    (tmp_path / "old.bin").write_bytes(ids.astype("<u4").tobytes())  # headerless, old format
    with pytest.raises(ValueError, match="corrupt or not an llmbook token file"):
        open_tokens(tmp_path / "old.bin")
    (tmp_path / "cut.bin").write_bytes(path.read_bytes()[:-2])  # truncated
    with pytest.raises(ValueError, match="announces 3 uint32 ids"):
        open_tokens(tmp_path / "cut.bin")
    bad = bytearray(path.read_bytes())
    bad[8:16] = b"float64\0"
    (tmp_path / "dtype.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="names the dtype 'float64'"):
        open_tokens(tmp_path / "dtype.bin")


def test_token_storage_bad_input(tmp_path):
    cases = [
        (lambda: write_tokens([], tmp_path / "a.bin"), "non-empty 1-d array"),
        (lambda: write_tokens(np.zeros((2, 2), int), tmp_path / "a.bin"), "non-empty 1-d"),
        (lambda: write_tokens([1.5, 2.0], tmp_path / "a.bin"), "integers"),
        (lambda: write_tokens([70000], tmp_path / "a.bin"), r"\[0, 65535\]"),
        (lambda: write_tokens([-1, 2], tmp_path / "a.bin"), r"\[0, 65535\]"),
        (lambda: write_tokens([1], tmp_path / "a.bin", dtype="int64"), "dtype must be"),
        (lambda: open_tokens(tmp_path / "missing.bin"), "is not a file"),
        (lambda: open_tokens(tmp_path / "odd.bin"), "not an llmbook token file"),
        (lambda: open_tokens(tmp_path / "odd.bin", dtype="float32"), "dtype must be"),
    ]
    (tmp_path / "odd.bin").write_bytes(b"abc")
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_get_batch_targets_are_inputs_shifted():
    data = np.arange(100, dtype=np.uint16) * 3
    x, y = get_batch(data, 8, 10, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 10) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y[:, -1], x[:, -1] + 3)  # the token after the window
    assert torch.equal(x, x[:, :1] + 3 * torch.arange(10))  # consecutive tokens


def test_get_batch_reproducible_and_covers_every_offset(tmp_path):
    data = open_tokens(write_tokens(np.arange(20), tmp_path / "t.bin"))
    a = get_batch(data, 4, 5, generator=torch.Generator().manual_seed(7))
    b = get_batch(data, 4, 5, generator=torch.Generator().manual_seed(7))
    c = get_batch(data, 4, 5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    x, _ = get_batch(data, 2000, 5, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == set(range(20 - 5))  # offsets 0..N-T-1, all of them
    x, y = get_batch(data, 3, 19)  # block_size = N - 1: the one window
    assert torch.equal(x[0], torch.arange(19)) and torch.equal(y[0], torch.arange(1, 20))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.arange(10), 0, 4), "batch_size must be a positive integer"),
        ((np.arange(10), 2, 0), "block_size must be a positive integer"),
        ((np.arange(10), 2, 10), "block_size=10 needs at least 11 tokens"),
        ((np.arange(12).reshape(3, 4), 2, 2), "1-d numpy array"),
        ((list(range(10)), 2, 2), "1-d numpy array"),
    ],
)
def test_get_batch_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        get_batch(*args)
