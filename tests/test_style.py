"""The house style, tested (CONTRIBUTING.md, "Rules a chapter follows").

Each test reads the chapters' MyST sources (``chapters/NN_slug.md``) or their executed
twins and checks one rule a reader would notice when it is broken:

- code fits the page: no line of a visible code cell is longer than :data:`CODE_WIDTH`;
- no tooling on the page: nbval and formatter comments are cell tags, not comments, and
  the prose does not talk about the build (make targets, nbval, benchmark files);
- the chapters stand on their own: the source documents (S0–S4) are named only inside
  errata asides, never in running text, code or output;
- the visible cells run alone: no visible cell uses a name that only a hidden cell
  defines (a static check over the cells' syntax trees);
- no dangling chapter reference: a chapter that does not exist yet is "to come".

A cell is *hidden* when it is tagged ``remove-cell`` or ``remove-input`` (its code is not
on the page); ``hide-input`` cells are collapsed but on the page, so they count as visible.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))
#: The longest code line that fits the page's code blocks at a 1280 px window.
CODE_WIDTH = 80
HIDDEN_TAGS = {"remove-cell", "remove-input"}
SOURCE_NAME = re.compile(r"\bS[0-4]\b")
ERRATA_OPEN = re.compile(r"^(`{3,}|:{3,})\{(admonition|dropdown)\}\s*Errata", re.IGNORECASE)
TOOLING_WORDS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bmake (book|test|zoo|execute|budget|setup)\b",
        r"\bnbval\b",
        r"RESULTS\.md",
        r"\bbenchmarks/",
        r"\.venv\b",
        r"\bhidden (check )?cells?\b",
        r"\bthe book's build\b",
    )
]


def _cells(md: Path) -> list[nbformat.NotebookNode]:
    return jupytext.read(md).cells


def _hidden(cell: nbformat.NotebookNode) -> bool:
    return bool(HIDDEN_TAGS & set(cell.metadata.get("tags", [])))


def _ids(p: Path) -> str:
    return p.stem


def _existing_chapters() -> set[int]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return {int(m.group(1)) for f in files if (m := re.match(r"chapters/(\d\d)_", f))}


def _outside_errata(text: str) -> list[str]:
    """The lines of a markdown cell that are not inside an errata aside."""
    lines, fence = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            m = ERRATA_OPEN.match(stripped)
            if m:
                fence = m.group(1)
                continue
            lines.append(line)
        elif stripped == fence:
            fence = None
    return lines


# ------------------------------------------------------------------------ code width
@pytest.mark.parametrize("md", CHAPTERS, ids=_ids)
def test_code_fits_the_page(md):
    long = [
        f"cell {i}: {len(line)} chars: {line.strip()[:60]}"
        for i, cell in enumerate(_cells(md))
        if cell.cell_type == "code" and not _hidden(cell)
        for line in cell.source.splitlines()
        if len(line) > CODE_WIDTH
    ]
    assert not long, f"code lines over {CODE_WIDTH} characters:\n" + "\n".join(long)


# ------------------------------------------------------------------------- tooling
@pytest.mark.parametrize("md", CHAPTERS, ids=_ids)
def test_no_tooling_comments_in_code(md):
    bad = [
        f"cell {i}: {line.strip()}"
        for i, cell in enumerate(_cells(md))
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if re.search(r"#\s*(NBVAL_|fmt:\s*(skip|off|on))", line)
    ]
    assert not bad, "use cell tags (nbval-ignore-output), not comments:\n" + "\n".join(bad)


@pytest.mark.parametrize("md", CHAPTERS + BOOK_PAGES, ids=_ids)
def test_no_tooling_words_in_prose(md):
    if md.parent.name == "chapters":
        texts = [c.source for c in _cells(md) if c.cell_type == "markdown"]
    else:
        texts = [md.read_text(encoding="utf-8")]
    bad = [
        f"{pattern.pattern!r}: …{text[max(0, m.start() - 30) : m.end() + 30]}…"
        for text in texts
        for pattern in TOOLING_WORDS
        if (m := pattern.search(text))
    ]
    assert not bad, "tooling words in the prose:\n" + "\n".join(bad)


# ------------------------------------------------------------------ stands on its own
@pytest.mark.parametrize("md", CHAPTERS, ids=_ids)
def test_sources_named_only_in_errata_asides(md):
    bad = []
    for i, cell in enumerate(_cells(md)):
        if cell.cell_type == "markdown":
            lines = _outside_errata(cell.source)
        elif not _hidden(cell):
            lines = cell.source.splitlines()
        else:
            continue
        bad += [f"cell {i}: {line.strip()[:90]}" for line in lines if SOURCE_NAME.search(line)]
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") or "".join(
                v for k, v in out.get("data", {}).items() if k == "text/plain"
            )
            if isinstance(text, list):
                text = "".join(text)
            lines = [ln for ln in text.splitlines() if SOURCE_NAME.search(ln)]
            bad += [f"output of cell {i}: {ln[:90]}" for ln in lines]
    assert not bad, "source documents named outside errata asides:\n" + "\n".join(bad)


# -------------------------------------------------------------- visible cells alone
def _bound_and_loaded(source: str) -> tuple[set[str], list[str]]:
    """Names a cell binds anywhere, and the names it reads, in order of appearance."""
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    tree = ast.parse(code)
    bound: set[str] = set()
    loaded: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loaded.append(node.id)
        elif isinstance(node, ast.Name):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
    return bound, loaded


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids)
def test_visible_cells_run_alone(md):
    cells = [c for c in _cells(md) if c.cell_type == "code"]
    visible: set[str] = set(dir(builtins)) | {"get_ipython", "display"}
    bad = []
    for i, cell in enumerate(cells):
        bound, loaded = _bound_and_loaded(cell.source)
        if _hidden(cell):
            continue
        for name in loaded:
            if name not in visible and name not in bound:
                bad.append(f"code cell {i} uses {name!r}")
        visible |= bound
    # a name that a visible cell reads before any visible cell binds it comes from a
    # hidden cell (or nowhere): either way a reader who copies the visible cells fails
    assert not bad, "visible cells use names no earlier visible cell defines:\n" + "\n".join(
        sorted(set(bad))
    )


# ---------------------------------------------------------- dangling chapter refs
CHAPTER_REF = re.compile(r"\b[Cc]hapters? (\d+)(?:\s*(?:–|-|and|,)\s*(\d+))*")


@pytest.mark.parametrize("md", CHAPTERS + BOOK_PAGES, ids=_ids)
def test_no_dangling_chapter_reference(md):
    existing = _existing_chapters()
    if md.parent.name == "chapters":
        texts = [c.source for c in _cells(md) if c.cell_type == "markdown"]
    else:
        texts = [md.read_text(encoding="utf-8")]
    bad = []
    for text in texts:
        for m in CHAPTER_REF.finditer(text):
            numbers = [int(n) for n in re.findall(r"\d+", m.group(0))]
            missing = [n for n in numbers if n not in existing]
            after = text[m.end() : m.end() + 60]
            if missing and "to come" not in after:
                bad.append(f"{m.group(0)!r} (not written: {missing}): …{after[:40]}")
    assert not bad, "a chapter not written yet must be marked '(to come)':\n" + "\n".join(bad)


# --------------------------------------------------------------------- roles in math
ROLE = re.compile(r"\{(glue|glue:text|glue:md|term|ref|doc|cite|cite:p|cite:t|numref|eq)\}`")


def _inline_math(text: str) -> list[str]:
    """The $…$ spans of a markdown text, outside code fences, code spans and $$…$$."""
    text = re.sub(r"^(`{3,}|:{3,}).*?^\1\s*$", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.DOTALL)
    text = re.sub(r"(?<!\})`[^`\n]*`", "", text)  # code spans, not the targets of roles
    return re.split(r"(?<!\\)\$", text)[1::2]


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids)
def test_no_roles_inside_math(md):
    """A role inside $…$ is not resolved: the page shows its raw text (e.g. a glued number)."""
    bad = [
        f"${span[:70]}$"
        for cell in _cells(md)
        if cell.cell_type == "markdown"
        for span in _inline_math(cell.source)
        if ROLE.search(span)
    ]
    assert not bad, "roles inside inline math (move them out of the $…$):\n" + "\n".join(bad)
