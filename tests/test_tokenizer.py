"""Tests of llmbook.tokenizer: known merges, the round trip, naive = incremental training,
equality with tiktoken built from our merges, the file format, and bad input."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook import corpus
from llmbook.tokenizer import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    BPETokenizer,
    chunk_counts,
    learn_merges,
    learn_merges_naive,
    merge_pair,
    pair_counts,
    split_text,
)

WHOLE = r"[\s\S]+"  # a split pattern that keeps the text in one chunk
SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"]


@pytest.fixture(scope="module")
def shakespeare_tok() -> BPETokenizer:
    """1,024 ids (4 special) learned on 1 MB of the training plays, GPT-4 pattern."""
    text = corpus.shakespeare("train")[:1_000_000]
    return BPETokenizer.train(text, 1024, special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def gpt2_tok() -> BPETokenizer:
    """512 ids learned on 300 KB of pydoc text with the GPT-2 pattern."""
    return BPETokenizer.train(corpus.pydoc_text()[:300_000], 512, pattern=GPT2_PATTERN)


@pytest.fixture(scope="module")
def encodings(shakespeare_tok, gpt2_tok) -> list:
    """(ours, tiktoken built from our merges) for both tokenizers."""
    return [(tok, tok.to_tiktoken()) for tok in (shakespeare_tok, gpt2_tok)]


# ------------------------------------------------------------------ known values
def test_merge_pair():
    assert merge_pair([7, 7, 7], (7, 7), 256) == [256, 7]  # left to right, no overlap
    assert merge_pair([7, 7, 7, 7], (7, 7), 256) == [256, 256]
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([1, 2], (2, 1), 9) == [1, 2]
    assert merge_pair([], (1, 2), 9) == []


def test_wikipedia_example():
    # "aaabdaaabac": aa -> Z (4 overlapping pairs), ab -> Y (3), ZY -> X (2).
    tok = BPETokenizer.train("aaabdaaabac", 259, pattern=WHOLE)
    a, b = ord("a"), ord("b")
    assert tok.merges == [(a, a), (a, b), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]
    assert tok.token_bytes(258) == b"aaab"


def test_tie_break_smallest_pair():
    # One word, every pair seen once: the tie goes to the smallest (id1, id2), which gives
    # S4's illustration, 'e'+'r' then 'l'+'o'.
    tok = BPETokenizer.train("lower", 259)
    assert [tok.token_bytes(i) for i in (256, 257, 258)] == [b"er", b"lo", b"wer"]
    assert learn_merges({b"cdab": 1}, 1) == [(ord("a"), ord("b"))]


def test_pair_counts_weighted_and_inside_chunks():
    stats = pair_counts({b"ab": 3, b"bab": 2})
    assert stats == {(97, 98): 5, (98, 97): 2}
    assert pair_counts({(1, 2, 1, 2): 1}) == {(1, 2): 2, (2, 1): 1}


def test_split_patterns():
    text = "Hello world's 123456  end\n\n  x"
    assert split_text(text, GPT2_PATTERN) == [
        "Hello",
        " world",
        "'s",
        " 123456",
        " ",
        " end",
        "\n\n ",
        " x",
    ]
    assert split_text(text, GPT4_PATTERN) == [
        "Hello",
        " world",
        "'s",
        " ",
        "123",
        "456",
        " ",
        " end",
        "\n\n",
        " ",
        " x",
    ]
    # GPT-2's contractions are case-sensitive, GPT-4's are not.
    assert split_text("DON'T", GPT2_PATTERN) == ["DON", "'", "T"]
    assert split_text("DON'T", GPT4_PATTERN) == ["DON", "'T"]
    assert split_text("", GPT4_PATTERN) == []


def test_first_merges_on_shakespeare(shakespeare_tok):
    first = [shakespeare_tok.token_bytes(256 + k) for k in range(5)]
    assert first == [b" t", b"he", b" a", b"ou", b" s"]
    assert shakespeare_tok.vocab_size == 1024
    assert len(shakespeare_tok.merges) == 1024 - 256 - len(SPECIALS)
    assert shakespeare_tok.special_tokens["<|endoftext|>"] == 1020


def test_prefix_property():
    # Training is greedy, so a smaller vocabulary learns a prefix of a larger one's merges.
    text = corpus.shakespeare("train")[:100_000]
    small = BPETokenizer.train(text, 300)
    large = BPETokenizer.train(text, 400)
    assert large.merges[: len(small.merges)] == small.merges


def test_compression_on_held_out(shakespeare_tok):
    valid = corpus.shakespeare("validation")
    ids = shakespeare_tok.encode(valid)
    assert 2.3 < len(valid) / len(ids) < 2.8  # characters per token; bytes would give ~1
    # Encoding is deterministic and the chunk cache does not change it.
    assert shakespeare_tok.encode(valid) == ids


# ------------------------------------------------------------------ round trip
@settings(max_examples=150, deadline=None)
@given(text=st.text())
def test_round_trip_any_text(shakespeare_tok, gpt2_tok, text):
    for tok in (shakespeare_tok, gpt2_tok):
        ids = tok.encode(text, disallowed_special=())  # st.text() may give "<|endoftext|>"
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")
        assert all(0 <= i < 256 + len(tok.merges) for i in ids)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SPECIALS)), max_size=8))
def test_round_trip_with_special_tokens(shakespeare_tok, parts):
    text = "".join(parts)
    ids = shakespeare_tok.encode(text, allowed_special="all")
    assert shakespeare_tok.decode(ids) == text
    plain = shakespeare_tok.encode(text, disallowed_special=())
    assert shakespeare_tok.decode(plain) == text
    assert not set(plain) & set(shakespeare_tok.special_tokens.values())


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n",
        "é",
        "naïve café",
        "日本語のテキスト",
        "😀",
        "👩‍👩‍👧 family",
        "\x00\x7f\uffff\U0010ffff",
    ],
)
def test_round_trip_examples(shakespeare_tok, text):
    assert shakespeare_tok.decode(shakespeare_tok.encode(text)) == text


def test_special_tokens_encode_to_one_id(shakespeare_tok):
    template = "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
    ids = shakespeare_tok.encode(template, allowed_special="all")
    sp = shakespeare_tok.special_tokens
    assert ids[0] == sp["<|system|>"] and ids.count(sp["<|user|>"]) == 1
    assert shakespeare_tok.decode(ids) == template
    only_user = shakespeare_tok.encode("<|user|>", allowed_special={"<|user|>"})
    assert only_user == [sp["<|user|>"]]


def test_partial_character_decodes_with_replacement(shakespeare_tok):
    ids = shakespeare_tok.encode("😀")
    assert len(ids) == 4  # four UTF-8 bytes, never merged in Shakespeare
    assert shakespeare_tok.decode(ids[:2]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        shakespeare_tok.decode(ids[:2], errors="strict")


# ------------------------------------------------------------------ training = naive
def test_incremental_equals_naive_on_shakespeare():
    counts = chunk_counts(corpus.shakespeare("train")[:300_000], GPT4_PATTERN)
    assert learn_merges(counts, 100) == learn_merges_naive(counts, 100)


def test_incremental_equals_naive_on_code():
    _, code = corpus.pydoc_prose_and_code()
    counts = chunk_counts(code, GPT2_PATTERN)
    assert learn_merges(counts, 150) == learn_merges_naive(counts, 150)


def _merges_or_error(fn, counts, n):
    try:
        return fn(counts, n)
    except ValueError as err:
        return str(err)


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="aab c\n", min_size=1, max_size=80), n=st.integers(0, 30))
def test_incremental_equals_naive_property(text, n):
    # A tiny alphabet makes ties and overlapping pairs (a a a) common.
    for pattern in (GPT4_PATTERN, WHOLE):
        counts = chunk_counts(text, pattern)
        fast = _merges_or_error(learn_merges, counts, n)
        slow = _merges_or_error(learn_merges_naive, counts, n)
        assert fast == slow


# ------------------------------------------------------------------ tiktoken cross-check
@pytest.mark.parametrize("source", ["validation", "test", "pydoc"])
def test_tiktoken_equal_on_held_out_text(encodings, source):
    # Held out for both: the Shakespeare tokenizer saw 1 MB of the training plays, the
    # pydoc one the first 300 KB of pydoc.
    text = corpus.pydoc_text()[300_000:] if source == "pydoc" else corpus.shakespeare(source)
    for tok, enc in encodings:
        assert enc.n_vocab == tok.vocab_size
        assert enc.encode(text) == tok.encode(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab cdé😀\n\t'sT19,.!-ΩЖ中")), max_size=50))
def test_tiktoken_equal_property(encodings, text):
    for tok, enc in encodings:
        assert enc.encode(text) == tok.encode(text)


def test_tiktoken_special_tokens(shakespeare_tok):
    enc = shakespeare_tok.to_tiktoken()
    text = "<|user|>\nO Romeo, Romeo!<|endoftext|>"
    assert enc.encode(text, allowed_special="all") == shakespeare_tok.encode(
        text, allowed_special="all"
    )
    with pytest.raises(ValueError):
        enc.encode(text)  # tiktoken refuses too: same default


def test_to_tiktoken_refuses_duplicate_bytes():
    a, b, c = (ord(x) for x in "abc")
    # "abc" made twice: (ab)c and a(bc)
    tok = BPETokenizer([(a, b), (256, c), (b, c), (a, 258)])
    assert tok.token_bytes(257) == tok.token_bytes(259) == b"abc"
    with pytest.raises(ValueError, match="same bytes"):
        tok.to_tiktoken()


# ------------------------------------------------------------------ files
def test_save_load_round_trip(tmp_path, shakespeare_tok):
    path = tmp_path / "tok.bpe"
    shakespeare_tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == shakespeare_tok.merges
    assert loaded.pattern == shakespeare_tok.pattern
    assert loaded.special_tokens == shakespeare_tok.special_tokens
    text = "ROMEO:\nBut, soft! what light through yonder window breaks?<|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == shakespeare_tok.encode(
        text, allowed_special="all"
    )


def test_file_format_is_the_documented_one(tmp_path):
    tok = BPETokenizer([(116, 104), (256, 101)], pattern=GPT2_PATTERN, special_tokens=["<|e|>"])
    path = tmp_path / "small.bpe"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "llmbook-bpe 1"
    assert lines[1].startswith('pattern "') and lines[2:] == [
        "special 1",
        '"<|e|>"',
        "merges 2",
        "116 104",
        "256 101",
        "",
    ]
    assert BPETokenizer.load(path).encode("the") == [257]


GOOD_HEAD = "llmbook-bpe 1\npattern " + json.dumps(GPT4_PATTERN) + "\n"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "the first line"),
        ("not-a-bpe 1\n", "the first line"),
        (GOOD_HEAD + "special 0\nmerges 2\n97 98\n", "line 6 must be two ids"),
        (GOOD_HEAD + "special 0\nmerges 1\n97 x\n", "invalid literal"),
        (GOOD_HEAD + "special 0\nmerges 1\n97 300\n", r"merges\[0\]"),  # id not yet defined
        (GOOD_HEAD + "special -1\nmerges 0\n", "special <count>"),
        ("llmbook-bpe 1\npattern x\nspecial 0\nmerges 0\n", "Expecting value"),  # not JSON
        ('llmbook-bpe 1\npattern "x"\nspecial 0\nmerges 0\n', "not one of SPLIT_PATTERNS"),
    ],
)
def test_load_malformed(tmp_path, content, match):
    path = tmp_path / "bad.bpe"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.bpe.*{match}"):
        BPETokenizer.load(path)
    path.write_text(GOOD_HEAD + "special 0\nmerges 1\n97 98\n", encoding="utf-8")
    assert BPETokenizer.load(path).encode("ab") == [256]  # the good file loads


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: BPETokenizer.train("some text", 255), "vocab_size"),
        (lambda: BPETokenizer.train("some text", 257, special_tokens=["<a>", "<b>"]), "vocab_size"),
        (lambda: BPETokenizer.train("some text", 300.0), "vocab_size"),
        (lambda: BPETokenizer.train("some text", True), "vocab_size"),
        (lambda: BPETokenizer.train("", 300), "non-empty"),
        (lambda: BPETokenizer.train(b"bytes", 300), "text must be a str"),
        (lambda: BPETokenizer.train("ab ab", 300), "allows only"),
        (lambda: BPETokenizer.train("text", 300, pattern="("), "pattern"),
        (lambda: BPETokenizer.train("text", 300, special_tokens=["<a>", "<a>"]), "duplicates"),
        (lambda: BPETokenizer.train("text", 300, special_tokens=[""]), "special_tokens"),
        (lambda: BPETokenizer.train("text", 300, special_tokens="<a>"), "special_tokens"),
        (lambda: BPETokenizer([(1, 256)]), r"merges\[0\]"),
        (lambda: BPETokenizer([(1, 2), (1, 2)]), "repeats"),
        (lambda: BPETokenizer([(1, -1)]), r"merges\[0\]"),
        (lambda: split_text("ab", r"a"), "position 1"),
        (lambda: learn_merges({b"ab": 1}, -1), "n_merges"),
        (lambda: learn_merges({b"ab": 0}, 1), "positive"),
        (lambda: learn_merges_naive([b"ab"], 1), "counts must map"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lone_surrogate_is_refused(shakespeare_tok):
    with pytest.raises(ValueError, match="surrogate U\\+D800 at position 3"):
        shakespeare_tok.encode("abc\ud800def")
    with pytest.raises(ValueError, match="surrogate"):
        BPETokenizer.train("x\udfff", 300)


def test_bad_special_token_use(shakespeare_tok):
    with pytest.raises(ValueError, match="special token '<\\|user\\|>' at position 3"):
        shakespeare_tok.encode("Hi <|user|>")
    with pytest.raises(ValueError, match="allowed_special has unknown"):
        shakespeare_tok.encode("Hi", allowed_special={"<|im_start|>"})
    with pytest.raises(ValueError, match="disallowed_special has unknown"):
        shakespeare_tok.encode("Hi", disallowed_special={"<|im_start|>"})
    with pytest.raises(ValueError, match="allowed_special must be"):
        shakespeare_tok.encode("Hi", allowed_special="<|user|>")
    # Allowing one special token still refuses the others.
    with pytest.raises(ValueError, match="endoftext"):
        shakespeare_tok.encode("<|user|><|endoftext|>", allowed_special={"<|user|>"})


@pytest.mark.parametrize(
    ("ids", "match"),
    [([1, 1024], r"ids\[1\] = 1024 is out of range"), ([-1], r"ids\[0\] = -1"), ([1.5], "integer")],
)
def test_bad_decode(shakespeare_tok, ids, match):
    with pytest.raises(ValueError, match=match):
        shakespeare_tok.decode(ids)
