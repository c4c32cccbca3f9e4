"""Each chapter's MyST source (.md) and executed notebook (.ipynb) must hold the same cells.

The .md is what authors edit; the .ipynb (with outputs) is what the site and nbval read.
This test fails when one was edited without refreshing the other (`make execute`).
"""

from pathlib import Path

import jupytext
import nbformat
import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
SOURCES = sorted(CHAPTERS.glob("[0-9][0-9]_*.md"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_chapter_has_both_twins():
    assert SOURCES, "no chapters found"
    notebooks = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in SOURCES] == [p.stem for p in notebooks]


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.stem)
def test_inputs_agree(md):
    from_md = jupytext.read(md)
    from_ipynb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    assert _cells(from_md) == _cells(from_ipynb), f"{md.name} and its .ipynb differ: make execute"


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_executed(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "run make execute"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "cells were not run top to bottom once"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
