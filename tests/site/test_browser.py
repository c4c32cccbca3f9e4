"""The built site in a real browser: headless Chromium opens every page over local HTTP.

A page fails on: a console error or uncaught exception, a failed or non-local request
(the site must read fully offline, MathJax included), math left untypeset, an image that
did not load, MyST markup that leaked through unrendered, or a broken internal link.
Screenshots of every page (and of each chapter in dark mode) are kept in
tests/site/screenshots/ as test artefacts.

Run after `make book`. Needs Debian's `chromium` (apt-get install chromium); without it
the test skips on a reader's machine and fails under CI (CI=true).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "book" / "_build" / "html"
SHOTS = Path(__file__).resolve().parent / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Pages Sphinx generates that hold no book content, and Sphinx's own source copies.
SKIP = {"genindex.html", "py-modindex.html"}
LEAKED_MARKUP = re.compile(r"```\{|\{glue:|\{cite:|\{eq\}|\{ref\}|\{doc\}|\{term\}|\{numref\}")
RAW_TEX = re.compile(r"\\(frac|sum|mathcal|log|mid|hat|le|ge|KL|mathrm)\b|\$\$")


def _pages() -> list[str]:
    if not SITE.is_dir():
        return []
    return sorted(
        str(p.relative_to(SITE))
        for p in SITE.rglob("*.html")
        if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts
    )


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return os.environ.get("CHROMIUM") or found


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(f"{reason}. Install it with: sudo apt-get install chromium, then run `make book`.")


@pytest.fixture(scope="module")
def server():
    if not SITE.is_dir():
        _unavailable(f"no built site at {SITE}: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        _unavailable("Chromium was not found")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _visit(browser, url: str, shot: Path, dark: bool = False) -> list[str]:
    """Open url, wait for MathJax, screenshot it, and return the problems found."""
    problems: list[str] = []
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme="dark" if dark else "light"
    )
    page = context.new_page()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))

    def route(r):
        if r.request.url.startswith(origin) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            problems.append(f"request to an external host: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"),
    )
    page.goto(url, wait_until="networkidle")
    has_math = page.evaluate("() => document.querySelectorAll('.math').length > 0")
    if has_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        untypeset = page.evaluate(
            "() => [...document.querySelectorAll('.math')]"
            ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))"
        )
        problems += [f"math not typeset: {t!r}" for t in untypeset]
    broken_images = page.evaluate(
        "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"
    )
    problems += [f"image did not load: {src}" for src in broken_images]
    prose = page.evaluate(
        "() => { const m = document.querySelector('main') || document.body;"
        " const c = m.cloneNode(true);"
        " c.querySelectorAll('pre, code, mjx-container, .math, script, style')"
        ".forEach(e => e.remove());"
        " return c.innerText; }"
    )
    for pattern, what in ((LEAKED_MARKUP, "unrendered MyST markup"), (RAW_TEX, "raw TeX")):
        for m in pattern.finditer(prose):
            problems.append(f"{what}: ...{prose[max(0, m.start() - 40) : m.end() + 20]!r}...")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    context.close()
    return problems


@pytest.mark.parametrize("page_path", _pages() or ["<no site built>"])
def test_page_in_browser(page_path, server, browser):
    shot = SHOTS / page_path.replace("/", "__").replace(".html", ".png")
    problems = _visit(browser, f"{server}/{page_path}", shot)
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page_path", [p for p in _pages() if p.startswith("chapters/")])
def test_chapter_in_dark_mode(page_path, server, browser):
    shot = SHOTS / ("dark__" + page_path.replace("/", "__").replace(".html", ".png"))
    problems = _visit(browser, f"{server}/{page_path}", shot, dark=True)
    assert not problems, f"{page_path} (dark):\n  " + "\n  ".join(problems)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.hrefs.append(a["src"])
        if tag == "link" and a.get("href"):
            self.hrefs.append(a["href"])


@functools.cache
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_internal_links_resolve():
    if not SITE.is_dir():
        _unavailable(f"no built site at {SITE}: run `make book` first")
    broken = []
    for rel in _pages():
        page = SITE / rel
        for href in _parse(page).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue  # external links (launch buttons, repository) are not followed
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{rel}: {href} (no file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target).ids:
                    broken.append(f"{rel}: {href} (no anchor)")
    assert not broken, "broken internal links:\n  " + "\n  ".join(broken)
