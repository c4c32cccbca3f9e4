"""The built site in a real browser: headless Chromium opens every page over local HTTP.

Every page is opened three times, and a screenshot of each is kept in tests/site/screenshots/
(ignored by git): `1280__<page>.png` (a 1280 px window, light), `1280-dark__<page>.png` (the
theme's dark mode) and `400__<page>.png` (a phone).

A page fails on:
* a console error or uncaught exception, a failed or non-local request (the site must read
  fully offline, MathJax included), math left untypeset, an image that did not load, MyST
  markup that leaked through unrendered, raw TeX in the prose;
* at 1280 px (dropdowns and collapsed cells opened): a code block, a cell output or a display
  equation wider than its column (it would need sideways scrolling), or an equation running
  under its equation number; the message names the element and the overflow in px;
* at 400 px: the page itself scrolling sideways (wide tables and code scroll in their box);
* a figure image whose alt text is missing or is the image's path; a Graphviz diagram that
  did not load, has no alt text, or is drawn so wide that the column shrinks its text
  below 70 % (about 11 px);
* search shown more than once; a header button that leads off the site (a repository, Binder,
  Colab).
The built pages' text must show no unresolved reference (the check that `make book` runs,
book/_ext/llmbook_site.py), search snippets no raw TeX, and internal links must resolve.

Run after `make book` (LLMBOOK_SITE_DIR=<dir> tests another build: its html folder, or the
--path-output folder of `jupyter-book build`). Needs Debian's `chromium` (apt-get install
chromium); without it the test skips on a reader's machine and fails under CI (CI=true).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _site_dir() -> Path:
    given = os.environ.get("LLMBOOK_SITE_DIR")
    if not given:
        return ROOT / "book" / "_build" / "html"
    path = Path(given).resolve()
    return path / "_build" / "html" if (path / "_build" / "html").is_dir() else path


SITE = _site_dir()
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
WIDE, NARROW, HEIGHT = 1280, 400, 900
# Pages Sphinx generates that hold no book content, and Sphinx's own source copies.
SKIP = {"genindex.html", "py-modindex.html"}
LEAKED_MARKUP = re.compile(r"```\{|\{glue:|\{cite:|\{eq\}|\{ref\}|\{doc\}|\{term\}|\{numref\}")
RAW_TEX = re.compile(r"\\(frac|sum|mathcal|log|mid|hat|le|ge|KL|mathrm|sqrt|mathbf)\b|\$\$")


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


def _shot(page_path: str, kind: str) -> Path:
    return SHOTS / f"{kind}__{page_path.replace('/', '__').replace('.html', '.png')}"


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


# ---- What the browser measures ---------------------------------------------------------------

# Opens what a reader can open (solutions, collapsed cells), so that their content is measured.
EXPAND = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
}"""

# At the wide window: code, outputs and display math that do not fit their column.
WIDE_LAYOUT = """() => {
  const found = [];
  const px = v => Math.round(v);
  const longest = text => text.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '');
  const cellLabel = el => {
    const cell = el.closest('div.cell');
    if (!cell) return '';
    const cells = [...document.querySelectorAll('div.cell')];
    const src = cell.querySelector('.cell_input pre');
    const first = src ? src.textContent.split('\\n')[0].slice(0, 50) : '';
    return `code cell ${cells.indexOf(cell) + 1} of ${cells.length} ("${first}")`;
  };
  const visible = el => el.getClientRects().length > 0 && el.clientWidth > 0;
  for (const pre of document.querySelectorAll('article.bd-article div.highlight pre')) {
    if (!visible(pre) || pre.scrollWidth <= pre.clientWidth + 1) continue;
    const inOutput = !!pre.closest('.cell_output');
    const line = longest(pre.textContent);
    const where = cellLabel(pre)
      || `code block ("${pre.textContent.trim().split('\\n')[0].slice(0, 50)}")`;
    found.push(`${inOutput ? 'output of ' : ''}${where}: `
      + `${inOutput ? 'output' : 'code'} is ${px(pre.scrollWidth - pre.clientWidth)} px too `
      + `wide; longest line ${line.length} chars: ${JSON.stringify(line.slice(0, 100))}`);
  }
  for (const out of document.querySelectorAll('article.bd-article .cell_output .output')) {
    if (!visible(out) || out.scrollWidth <= out.clientWidth + 1) continue;
    if (out.querySelector('div.highlight pre')) continue;  // reported above
    const line = longest(out.innerText);
    found.push(`output of ${cellLabel(out)}: ${px(out.scrollWidth - out.clientWidth)} px too `
      + `wide; longest line ${line.length} chars: ${JSON.stringify(line.slice(0, 100))}`);
  }
  const article = document.querySelector('article.bd-article') || document.body;
  const cs = getComputedStyle(article);
  const right = article.getBoundingClientRect().right - parseFloat(cs.paddingRight);
  for (const div of document.querySelectorAll('article.bd-article div.math')) {
    const box = div.querySelector('mjx-container[display]');
    if (!box || !visible(box)) continue;
    const math = box.querySelector('mjx-math');
    const eqno = div.querySelector('.eqno');
    const label = eqno ? `equation ${eqno.textContent.replace('#', '').trim()}`
      : `display equation "${div.textContent.trim().slice(0, 40)}"`;
    const m = math.getBoundingClientRect();
    if (box.scrollWidth > box.clientWidth + 1)
      found.push(`${label} (${div.id || 'no label'}): ${px(box.scrollWidth - box.clientWidth)} px `
        + `wider than its column (${px(m.width)} px of math in ${box.clientWidth} px)`);
    else if (eqno) {
      const n = eqno.getBoundingClientRect();
      const overlap = Math.min(m.right, box.getBoundingClientRect().right) - n.left;
      if (overlap > 0 && m.bottom > n.top && n.bottom > m.top)
        found.push(`${label} (${div.id}): runs ${px(overlap)} px under its equation number`);
    }
    if (div.getBoundingClientRect().right > right + 1)
      found.push(`${label}: ${px(div.getBoundingClientRect().right - right)} px past the column`);
  }
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 1)
    found.push(`the page scrolls sideways by `
      + `${document.documentElement.scrollWidth - document.documentElement.clientWidth} px`);
  return found;
}"""

# At the narrow window: the page must not scroll sideways; name what sticks out.
NARROW_LAYOUT = """() => {
  const vw = document.documentElement.clientWidth;
  const extra = document.documentElement.scrollWidth - vw;
  if (extra <= 1) return [];
  const clippedByScrollBox = el => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      const scrolls = ['auto', 'scroll', 'hidden', 'clip'].includes(o);
      if (scrolls && p.getBoundingClientRect().right <= vw + 1) return true;
    }
    return false;
  };
  const offenders = [];
  for (const el of document.querySelectorAll('article.bd-article *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= vw + 1 || clippedByScrollBox(el)) continue;
    if (offenders.some(o => o.contains(el))) continue;  // report the outermost
    offenders.push(el);
  }
  return [`the page scrolls sideways by ${extra} px at ${vw} px`].concat(offenders.slice(0, 10).map(
    el => `  ${el.tagName.toLowerCase()}.${[...el.classList].join('.')} sticks out `
      + `${Math.round(el.getBoundingClientRect().right - vw)} px: `
      + JSON.stringify((el.textContent || '').trim().slice(0, 60))));
}"""

# Figure images: alt text that says something; Graphviz diagrams: loaded, sized, described.
IMAGES = """() => {
  const found = [];
  for (const img of document.querySelectorAll('article.bd-article img')) {
    const src = img.getAttribute('src') || '';
    const alt = (img.getAttribute('alt') || '').trim();
    const file = src.split('/').pop();
    const oneWord = /^\\S+$/.test(alt);
    const pathLike = !alt || alt === src || alt === file
      || (oneWord && (alt.includes('/') || /\\.(png|svg|jpe?g|gif|webp|pdf)$/i.test(alt)))
      || /^(image|figure|img|plot|png|output)?\\s*\\d*$/i.test(alt);
    if (img.classList.contains('graphviz')) {
      const r = img.getBoundingClientRect();
      if (!img.complete || img.naturalWidth === 0 || r.width === 0 || r.height === 0)
        found.push(`Graphviz diagram did not render: ${src}`);
      else if (r.width < 0.7 * img.naturalWidth) {  // dot's 12 pt text falls below 11 px
        const pct = Math.round((100 * r.width) / img.naturalWidth);
        found.push(`Graphviz diagram too wide to read: drawn ${img.naturalWidth} px wide, `
          + `shrunk to ${Math.round(r.width)} px (text at ${pct}%); draw it narrower `
          + `(rankdir=TB, shorter labels): ${JSON.stringify(alt.slice(0, 60))}`);
      }
      if (!alt || /digraph|->|--|\\{/.test(alt))
        found.push(`Graphviz diagram without alt text (give the directive an :alt:): ${src}`);
      continue;
    }
    if (pathLike)
      found.push(`figure image without real alt text (alt=${JSON.stringify(alt)}; give the cell `
        + `metadata mystnb: image: alt: "..."): ${src}`);
  }
  const others = 'article.bd-article object.graphviz, article.bd-article svg.graphviz';
  for (const el of document.querySelectorAll(others)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0)
      found.push(`Graphviz diagram did not render: ${el.outerHTML.slice(0, 80)}`);
  }
  return found;
}"""

CHROME = """() => {
  const found = [];
  const search = '.search-button__button, .search-button-field, #searchbox input';
  const shown = [...document.querySelectorAll(search)]
    .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden');
  if (shown.length > 1) found.push(`search is shown ${shown.length} times`);
  for (const a of document.querySelectorAll('.bd-header-article a[href], .bd-header a[href]'))
    if (/^(https?:)?\\/\\//.test(a.getAttribute('href'))) found.push(`header button to ${a.href}`);
  return found;
}"""


def _open(browser, url: str, width: int, dark: bool = False):
    """A page at the given window width, MathJax done; (context, page, problems)."""
    problems: list[str] = []
    context = browser.new_context(
        viewport={"width": width, "height": HEIGHT}, color_scheme="dark" if dark else "light"
    )
    if dark:  # the theme keeps the reader's choice in localStorage
        context.add_init_script(
            "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');"
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
    page.evaluate("() => document.fonts.ready")
    if dark and page.evaluate("() => document.documentElement.dataset.theme") != "dark":
        problems.append("dark mode did not switch on")
    return context, page, problems


def _content_checks(page) -> list[str]:
    problems = []
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
    return problems


def _report(page_path: str, kind: str, problems: list[str]) -> str:
    return f"{page_path} ({kind}), {len(problems)} problem(s):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page_path", _pages() or ["<no site built>"])
def test_page_at_1280px(page_path, server, browser):
    context, page, problems = _open(browser, f"{server}/{page_path}", WIDE)
    problems += _content_checks(page)
    problems += page.evaluate(CHROME)
    _shot(page_path, "x").parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(_shot(page_path, str(WIDE))), full_page=True)
    page.evaluate(EXPAND)
    page.wait_for_timeout(50)
    problems += page.evaluate(WIDE_LAYOUT)
    problems += page.evaluate(IMAGES)
    context.close()
    if problems:
        pytest.fail(_report(page_path, f"{WIDE} px", problems), pytrace=False)


@pytest.mark.parametrize("page_path", _pages() or ["<no site built>"])
def test_page_in_dark_mode(page_path, server, browser):
    context, page, problems = _open(browser, f"{server}/{page_path}", WIDE, dark=True)
    problems += _content_checks(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(_shot(page_path, f"{WIDE}-dark")), full_page=True)
    context.close()
    if problems:
        pytest.fail(_report(page_path, f"{WIDE} px, dark", problems), pytrace=False)


@pytest.mark.parametrize("page_path", _pages() or ["<no site built>"])
def test_page_at_400px(page_path, server, browser):
    context, page, problems = _open(browser, f"{server}/{page_path}", NARROW)
    problems += page.evaluate(CHROME)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(_shot(page_path, str(NARROW))), full_page=True)
    page.evaluate(EXPAND)
    page.wait_for_timeout(50)
    problems += page.evaluate(NARROW_LAYOUT)
    context.close()
    if problems:
        pytest.fail(_report(page_path, f"{NARROW} px", problems), pytrace=False)


def test_search_results_show_no_raw_tex(server, browser):
    """Search shows snippets and titles as text, not TeX (book/_static/llmbook.js)."""
    if not (SITE / "search.html").exists():
        pytest.skip("no search page")
    problems, text = [], ""
    for query in ("attention", "probability"):  # words of pages with much math
        context, page, found = _open(browser, f"{server}/search.html?q={query}", WIDE)
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li p.context').length > 0",
            timeout=30_000,
        )
        page.wait_for_timeout(1000)  # the last snippets are fetched one after another
        text += page.evaluate("() => document.querySelector('#search-results').innerText")
        problems += found
        context.close()
    problems += [
        f"raw TeX in a search result: ...{text[max(0, m.start() - 40) : m.end() + 20]!r}..."
        for m in re.finditer(r"\\[A-Za-z]+|\\\(|\\\[|\$\$", text)
    ]
    if problems:
        pytest.fail("search page:\n  " + "\n  ".join(problems), pytrace=False)


def _site_extension():
    path = ROOT / "book" / "_ext" / "llmbook_site.py"
    spec = importlib.util.spec_from_file_location("llmbook_site", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_unresolved_references():
    """The check `make book` runs after the build, repeated on the site under test."""
    if not SITE.is_dir():
        _unavailable(f"no built site at {SITE}: run `make book` first")
    scan = _site_extension().unresolved_references
    found = [
        f"{rel}: {problem}"
        for rel in _pages()
        for problem in scan((SITE / rel).read_text(encoding="utf-8"))
    ]
    if found:
        pytest.fail("unresolved references:\n  " + "\n  ".join(found), pytrace=False)


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
                continue  # external links (citations) are not followed
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{rel}: {href} (no file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target).ids:
                    broken.append(f"{rel}: {href} (no anchor)")
    if broken:
        pytest.fail("broken internal links:\n  " + "\n  ".join(broken), pytrace=False)
