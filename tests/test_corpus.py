"""Tests of llmbook.corpus: the real corpora, the markup rules, and a leak-free split."""

import pytest

from llmbook import corpus


def test_all_plays_found_and_split_disjoint():
    plays = corpus.play_paths()
    assert len(plays) == 38
    train, val, test = (set(corpus.split_plays(s)) for s in ("train", "validation", "test"))
    assert len(train) == 34 and len(val) == 2 and len(test) == 2
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(plays)


def test_markup_conversion():
    md = (
        "# Title\n\n## ACT I\n\n### SCENE I. A place.\n\n_Enter A and B_\n\n"
        "**A**  \nHello there,  \n_\\[Aside]_ my friend.\n\n"
        "*Enter C,\nwith others.*\n\n**B**  \nYes\\--no.\n"
    )
    assert corpus.markdown_to_text(md) == "A:\nHello there,\nmy friend.\n\nB:\nYes--no.\n"
    kept = corpus.markdown_to_text(md, stage_directions=True)
    assert "[Enter A and B]" in kept and "[Aside] my friend." in kept
    assert "[Enter C, with others.]" in kept


def test_corpus_text_is_clean():
    text = corpus.shakespeare("all")
    assert 4_500_000 < len(text) < 5_200_000
    for markup in ("**", "_", "\\", "#", "[", "]", "*"):
        assert markup not in text, markup
    hamlet = corpus.play_text("hamlet")
    assert hamlet.startswith("BERNARDO:\nWho's there?\n\nFRANCISCO:\n")
    assert "To be, or not to be" in hamlet
    assert hamlet in corpus.shakespeare("test") and hamlet not in corpus.shakespeare("train")


def test_pydoc_corpus():
    topics = corpus.pydoc_topics()
    assert "assert" in topics and len(topics) > 50
    assert len(corpus.pydoc_text()) > 300_000


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: corpus.shakespeare("dev"), "split must be one of"),
        (lambda: corpus.play_text("hamlet-ii"), "unknown play"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_longest_shared_substring():
    assert corpus.longest_shared_substring("xxhello worldyy", "say hello world!") == 11
    assert corpus.longest_shared_substring("abc", "xyz") == 0
    assert corpus.longest_shared_substring("", "xyz") == 0
    with pytest.raises(ValueError, match="strings"):
        corpus.longest_shared_substring(["a"], "a")


def test_pydoc_prose_and_code():
    import ast

    prose, code = corpus.pydoc_prose_and_code()
    assert 200_000 < len(prose) < 300_000 and 15_000 < len(code) < 30_000
    assert "*****" not in prose and "=====" not in prose  # heading underlines dropped
    assert 'The "for" statement is used to iterate' in prose
    assert "for i in range(10):\n    print(i)" in code  # an indented literal block
    assert ">>> " in code  # doctest sessions count as code
    assert "   Called after the instance has been created" not in prose  # indented: neither
    blocks = code.split("\n\n")
    python_blocks = [b for b in blocks if not b.startswith(">>>")]
    for block in python_blocks[:50]:
        ast.parse(block)
    # A subset of topics gives a subset of the text; unknown topics are refused.
    sub_prose, sub_code = corpus.pydoc_prose_and_code(["for"])
    assert sub_prose in prose and sub_code in code and sub_code.startswith("for i in range")
    with pytest.raises(ValueError, match="topics"):
        corpus.pydoc_prose_and_code(["no-such-topic"])
