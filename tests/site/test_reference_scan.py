"""The post-build scan for unresolved references (book/_ext/llmbook_site.py) on known text.

`make book` runs the scan on every built page (each finding is a build warning, so -W fails);
tests/site/test_browser.py repeats it on the site under test. Here: it finds what a reader
saw on the site (raw roles, equation labels instead of numbers, "exercise Exercise", "??")
and stays quiet on resolved references, math and ordinary prose.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[2] / "book" / "_ext" / "llmbook_site.py"


@pytest.fixture(scope="module")
def scan():
    spec = importlib.util.spec_from_file_location("llmbook_site", EXT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.unresolved_references


def _page(body: str) -> str:
    return (
        '<html><body><nav>{eq}`not-in-the-article`</nav><article class="bd-article">'
        f"{body}</article></body></html>"
    )


@pytest.mark.parametrize(
    "text",
    [
        "the window plus one global token (eq. sliding-window), as in Fig. 5.3",
        "1 - (1 - s^r)^b (eq. lsh), for three ways",
        "With m = 3, eq. (epochs) gives the same number",
        '"""The gradients of eq. (backprop), written out by hand."""',
        "Cross-entropy (Chapter 1, eq. <code>eq-cross-entropy</code>).",
        "wasted comparisons (exercise Exercise 7.1).",
        "as Fig. ?? shows",
        "see {numref}`fig-loss` for the curve",
        "the caption cites {cite:p}`radford2019`",
        "glued {glue:text}`n_params:,` parameters",
    ],
)
def test_finds_unresolved_references(scan, text):
    assert scan(_page(f"<p>{text}</p>")), text


@pytest.mark.parametrize(
    "text",
    [
        "as Eq. (2.8) shows, and eq. 5.3 too; Equation (7.1) and (Eq. 4.11)",
        "the equation above, the exercise below (Exercise 7.1), Fig. 5.3 and Table 2",
        '<span class="math notranslate nohighlight">\\(a ?? b\\)</span>',
        "What is 2 + 2? Four. Why?",
        "x = {1: 2}  # a dict, not a role",
    ],
)
def test_quiet_on_resolved_text(scan, text):
    assert scan(_page(f"<p>{text}</p>")) == []


def test_reads_only_the_article(scan):
    assert scan(_page("<p>nothing to see</p>")) == []
