"""The book's figure style: one look for every chapter, legible in light and dark themes.

Figures are drawn on an opaque white card with dark text, so they read the same on the
site's light and dark backgrounds; lines use the Okabe–Ito palette, which stays distinct
for readers with colour-vision deficiencies and in greyscale print.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl

#: The Okabe–Ito colour-blind-safe palette, without its black (black is the text colour).
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
)

#: The matplotlib ``rcParams`` of every figure in the book.
BOOK_STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 3.8),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.edgecolor": "#333333",
    "axes.labelcolor": "#111111",
    "text.color": "#111111",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "font.size": 10,
    "figure.constrained_layout.use": True,
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib's global ``rcParams``."""
    mpl.rcParams.update(BOOK_STYLE)
