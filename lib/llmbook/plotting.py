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


# ------------------------------------------------------- attention figures (Ch. 5, 6)
#: The two colours of a mask figure: positions that may not attend, and those that may.
MASK_COLOURS: tuple[str, str] = ("#eeeeee", PALETTE[0])


def _as_matrix(name: str, value: Any, *, boolean: bool) -> Any:
    """``value`` (a tensor or array) as a 2-d NumPy array, or a ValueError naming it."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.ndim != 2 or 0 in value.shape:
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(f"{name} must be a non-empty 2-d tensor or array, got {shape}")
    if boolean and value.dtype != np.bool_:
        raise ValueError(f"{name} must be boolean (True = may attend), got {value.dtype}")
    if not boolean and not np.issubdtype(value.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point weights, got {value.dtype}")
    return value


def plot_masks(
    masks: dict[str, Any],
    *,
    xlabel: str = "key j",
    ylabel: str = "query i",
    width: float = 3.0,
) -> Any:
    r"""Boolean attention masks side by side, one panel each (Chapters 5 and 6).

    ``masks`` maps a panel title to a ``(T_q, T_k)`` boolean tensor or array with
    True = query :math:`i` may attend to key :math:`j`; allowed pairs are drawn in the
    book's blue (:data:`MASK_COLOURS`), the others in light grey. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    if not isinstance(masks, dict) or not masks:
        raise ValueError(f"masks must be a non-empty dict of title -> mask, got {masks!r}")
    arrays = {t: _as_matrix(f"masks[{t!r}]", m, boolean=True) for t, m in masks.items()}
    fig, axes = plt.subplots(1, len(arrays), figsize=(width * len(arrays), 0.95 * width + 0.4))
    axes = [axes] if len(arrays) == 1 else list(axes)
    cmap = ListedColormap(list(MASK_COLOURS))
    for ax, (title, m) in zip(axes, arrays.items(), strict=True):
        ax.imshow(m.astype(float), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(False)
    return fig


def plot_attention_weights(
    weights: Any,
    labels: list[str] | None = None,
    *,
    xlabel: str = "key (attended to)",
    ylabel: str = "query (attending)",
) -> Any:
    r"""A heatmap of one attention-weight matrix :math:`A` (rows: queries, columns: keys),
    with a colour bar from 0 to 1 and, optionally, the tokens as tick labels (Chapter 5).

    ``weights`` is a ``(T_q, T_k)`` float tensor or array; ``labels`` (length
    :math:`T_q = T_k`) names the positions. Returns the figure.
    """
    import matplotlib.pyplot as plt

    w = _as_matrix("weights", weights, boolean=False)
    if labels is not None and (len(labels) != w.shape[0] or w.shape[0] != w.shape[1]):
        raise ValueError(
            f"labels must name the {w.shape[0]} positions of a square weight matrix, "
            f"got {len(labels)} labels for shape {w.shape}"
        )
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="attention weight")
    return fig


# ------------------------------------------------------- attention maps (Chapter 7)
def plot_attention_grid(
    weights: Any,
    labels: list[str] | None = None,
    *,
    row_name: str = "layer",
    col_name: str = "head",
    panel_size: float = 1.9,
) -> Any:
    r"""Attention weights of many heads as a grid of heatmaps (Chapter 7).

    ``weights`` is a float tensor or array of shape ``(n_rows, n_cols, T, T)`` — for a
    model, layers × heads — or ``(n_cols, T, T)`` for one row. Panel ``(r, c)`` shows the
    matrix :math:`\mathbf A` of ``weights[r, c]`` (rows: queries, columns: keys) on one
    colour scale from 0 to 1, titled ``"{row_name} r+1, {col_name} c+1"``. ``labels``
    (length :math:`T`) name the positions on the left column's and the bottom row's axes;
    the other panels carry no tick labels. Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    w = weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights
    if isinstance(w, np.ndarray) and w.ndim == 3:
        w = w[None]
    if not isinstance(w, np.ndarray) or w.ndim != 4 or 0 in w.shape:
        shape = getattr(w, "shape", type(w).__name__)
        raise ValueError(
            f"weights must be a non-empty (n_rows, n_cols, T, T) tensor or array, got {shape}"
        )
    if w.shape[2] != w.shape[3]:
        raise ValueError(f"weights must hold square T x T matrices, got {w.shape[2:]}")
    if not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"weights must hold floating-point weights, got {w.dtype}")
    T = w.shape[2]
    if labels is not None and len(labels) != T:
        raise ValueError(f"labels must name the T = {T} positions, got {len(labels)} labels")
    if not (isinstance(panel_size, int | float) and panel_size > 0):
        raise ValueError(f"panel_size must be a positive number of inches, got {panel_size!r}")
    n_rows, n_cols = w.shape[:2]
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel_size * n_cols + 1.0, panel_size * n_rows + 0.3),
        squeeze=False,
    )
    image = None
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            image = ax.imshow(w[r, c], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{row_name} {r + 1}, {col_name} {c + 1}", fontsize=8)
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            if labels is not None and c == 0:
                ax.set_yticks(range(T), labels, fontsize=6)
            if labels is not None and r == n_rows - 1:
                ax.set_xticks(range(T), labels, fontsize=6, rotation=90)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return fig


# ----------------------------------------- tokenization and position figures (Ch. 3, 4)
def _numbers(name: str, value: Any, *, ndim: int) -> Any:
    """``value`` (a tensor, array or list) as a finite float NumPy array of ``ndim`` dims."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers, got {type(value).__name__}") from None
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-d array, got shape {array.shape}")
    return array


def _curves(name: str, curves: Any) -> dict[str, Any]:
    """A non-empty dict of label -> 1-d array, or a ValueError naming the argument."""
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"{name} must be a non-empty dict of label -> values, got {curves!r}")
    return {str(k): _numbers(f"{name}[{k!r}]", v, ndim=1) for k, v in curves.items()}


def plot_vocab_length(
    sizes: Any, tokens_per_1000: Any, points: dict[str, tuple[float, float]] | None = None
) -> Any:
    """Sequence length against vocabulary size, on a logarithmic size axis (Chapter 3).

    ``sizes`` are the vocabulary sizes :math:`V` of one tokenizer family (a line) and
    ``tokens_per_1000`` the tokens per 1,000 characters at each, :math:`1000/r(V)`;
    ``points`` adds single tokenizers as markers, label -> ``(V, tokens per 1,000)``.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    x = _numbers("sizes", sizes, ndim=1)
    y = _numbers("tokens_per_1000", tokens_per_1000, ndim=1)
    if x.shape != y.shape or (x <= 0).any():
        raise ValueError(
            f"sizes (positive) and tokens_per_1000 must have the same length, got "
            f"{x.shape[0]} and {y.shape[0]}"
        )
    fig, ax = plt.subplots()
    ax.plot(x, y, "o-", label="byte-level BPE")
    for (label, (V, per_1000)), marker in zip((points or {}).items(), "sDv^<>", strict=False):
        ax.plot([V], [per_1000], marker, ms=8, label=label)
    ax.set_xscale("log")
    ax.set(
        xlabel="vocabulary size V (tokens, log scale)",
        ylabel="sequence length (tokens per 1,000 characters)",
        ylim=(0, 1.1 * max([*y, *(p for _, p in (points or {}).values())])),
    )
    ax.legend()
    return fig


def plot_position_encoding(pe: Any) -> Any:
    r"""A heatmap of a position encoding, positions down, dimensions across (Chapter 4).

    ``pe`` is a ``(T, d_model)`` tensor or array with values in :math:`[-1, 1]` (the
    sinusoidal encoding); the colour scale is fixed to that range. Returns the figure.
    """
    import matplotlib.pyplot as plt

    values = _numbers("pe", pe, ndim=2)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set(xlabel="encoding dimension (2i: sine, 2i+1: cosine)", ylabel="position p (tokens)")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="PE value")
    return fig


def plot_alibi(bias: Any, slopes: Any) -> Any:
    r"""ALiBi's biases (Chapter 4): the steepest head's matrix, and every head's factor.

    ``bias`` is the ``(n_head, T, T)`` additive bias (:math:`-\infty` above the diagonal,
    drawn blank) and ``slopes`` the ``n_head`` slopes :math:`m_h`. Left, ``bias[0]``;
    right, :math:`e^{-m_h (i - j)}` against the distance, one line per head, log scale.
    Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    b = _numbers("bias", bias, ndim=3)
    m = _numbers("slopes", slopes, ndim=1)
    if b.shape[0] != m.shape[0] or b.shape[1] != b.shape[2]:
        raise ValueError(
            f"bias must be (n_head, T, T) with n_head = len(slopes) = {m.shape[0]}, got {b.shape}"
        )
    T = b.shape[1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.2))
    image = ax1.imshow(np.where(np.isfinite(b[0]), b[0], np.nan), cmap="viridis")
    ax1.set(xlabel="key position j", ylabel="query position i", title=f"head 1, slope {m[0]:g}")
    ax1.grid(False)
    fig.colorbar(image, ax=ax1, label="bias added to the score")
    distance = np.arange(T)
    for h, slope in enumerate(m, start=1):
        colour = plt.cm.viridis(h / (len(m) + 1))
        ax2.plot(distance, np.exp(-slope * distance), color=colour, label=f"h = {h}")
    ax2.set(xlabel="distance i - j (tokens)", ylabel="factor exp(-m_h (i - j))", yscale="log")
    ax2.legend(ncol=2, fontsize=7)
    return fig


def plot_rope_wavelengths(freqs: dict[str, Any], marks: dict[str, float] | None = None) -> Any:
    r"""The wavelength :math:`2\pi/\theta_i` of each RoPE frequency pair (Chapter 4).

    ``freqs`` maps a label to the :math:`d_{\text{head}}/2` frequencies of one scheme;
    ``marks`` draws labelled horizontal lines (context lengths, in tokens). Returns the
    figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    curves = _curves("freqs", freqs)
    if any((f <= 0).any() for f in curves.values()):
        raise ValueError("freqs must be positive (radians per token)")
    fig, ax = plt.subplots()
    for label, f in curves.items():
        ax.plot(np.arange(f.shape[0]), 2 * np.pi / f, label=label)
    for text, length in (marks or {}).items():
        ax.axhline(length, color="grey", lw=1, ls=":")
        ax.text(0, length * 1.15, text, color="grey", fontsize=8)
    ax.set(xlabel="frequency pair i", ylabel="wavelength (tokens)", yscale="log")
    ax.legend()
    return fig


def plot_score_by_distance(
    scores: dict[str, Any], *, near: int = 64, mark: float | None = None, n_bins: int = 48
) -> Any:
    """Attention score against distance, near and far (Chapter 4).

    ``scores`` maps a label to the score at distances ``0, 1, …, N-1``. Left, the first
    ``near + 1`` distances; right, all of them, averaged over ``n_bins`` logarithmic bins
    of distance so that the trend shows under the oscillations, with a dotted line at
    ``mark``. Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    curves = _curves("scores", scores)
    n = {c.shape[0] for c in curves.values()}
    if len(n) != 1 or min(n) < max(near + 1, 3):
        raise ValueError(f"scores must have one common length > near={near}, got {sorted(n)}")
    N = n.pop()
    edges = np.unique(np.geomspace(1, N, n_bins).astype(int))
    centres = np.sqrt(edges[:-1] * (edges[1:] - 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.4), sharey=True)
    for label, c in curves.items():
        ax1.plot(np.arange(near + 1), c[: near + 1], label=label)
        ax2.plot(centres, np.add.reduceat(c, edges[:-1]) / np.diff(edges), label=label)
    if mark is not None:
        ax2.axvline(mark, color="grey", lw=1, ls=":")
    ax1.set(xlabel="distance n - m (tokens)", ylabel="normalised score")
    ax2.set(xlabel="distance n - m (tokens)", xscale="log")
    ax1.legend()
    return fig


# ------------------------------------------ language-model and training figures (Ch. 1, 2)
def _series(name: str, value: Any) -> Any:
    """``value`` (a tensor, array or list) as a non-empty, finite 1-d float array."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers, got {type(value).__name__}") from None
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise ValueError(
            f"{name} must be a non-empty 1-d array of finite numbers, got shape {array.shape}"
        )
    return array


def plot_train_valid(
    x: Any,
    curves: dict[str, tuple[Any, Any]],
    *,
    xlabel: str,
    ylabel: str,
    baseline: tuple[str, float] | None = None,
) -> Any:
    """Training (dashed) and validation (solid) loss of several models against ``x``.

    ``curves`` maps a model's label to ``(train, valid)``, two sequences as long as ``x``
    that may be NaN where the model was not run (the point is left out); one colour per
    model. ``baseline`` draws a labelled grey horizontal line, ``(label, value)``.
    Chapter 1 draws n-gram cross-entropy against the order n with it. Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    xs = _series("x", x)
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            f"curves must be a non-empty dict of label -> (train, valid), got {curves!r}"
        )
    fig, ax = plt.subplots()
    for label, pair in curves.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"curves[{label!r}] must be a pair (train, valid), got {pair!r}")
        train, valid = (np.asarray(v, dtype=np.float64) for v in pair)
        if train.shape != xs.shape or valid.shape != xs.shape:
            raise ValueError(
                f"curves[{label!r}] must hold two sequences of length {len(xs)}, got "
                f"{train.shape} and {valid.shape}"
            )
        ok = ~np.isnan(valid)
        (line,) = ax.plot(xs[ok], valid[ok], "o-", label=f"{label}, validation")
        ok = ~np.isnan(train)
        ax.plot(
            xs[ok], train[ok], "o--", color=line.get_color(), alpha=0.6, label=f"{label}, training"
        )
    if baseline is not None:
        text, value = baseline
        ax.axhline(value, color="grey", lw=1)
        ax.annotate(
            text,
            (xs.max(), value),
            xytext=(0, -12),
            textcoords="offset points",
            ha="right",
            color="grey",
        )
    top = ax.get_ylim()[1] if baseline is None else max(ax.get_ylim()[1], 1.06 * value)
    ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, top))
    ax.legend(ncol=2, loc="lower left")
    return fig


def plot_functions_and_derivatives(
    x: Any, values: dict[str, Any], derivatives: dict[str, Any]
) -> Any:
    """Two panels: functions of ``x`` (left) and their derivatives (right), one colour each.

    ``values`` and ``derivatives`` map the same labels to sequences as long as ``x``.
    Chapter 2 draws the activation functions and their autograd derivatives with it.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    xs = _series("x", x)
    if not isinstance(values, dict) or not values or set(values) != set(derivatives or {}):
        raise ValueError(
            "values and derivatives must be non-empty dicts with the same labels, got "
            f"{sorted(values or {})} and {sorted(derivatives or {})}"
        )
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.4))
    for label in values:
        for ax, table, kind in ((ax1, values, "values"), (ax2, derivatives, "derivatives")):
            y = _series(f"{kind}[{label!r}]", table[label])
            if y.shape != xs.shape:
                raise ValueError(f"{kind}[{label!r}] has {len(y)} points, x has {len(xs)}")
            ax.plot(xs, y, label=label)
    ax1.set(xlabel="input x", ylabel="f(x)", title="activation")
    ax2.set(xlabel="input x", ylabel="f'(x)", title="derivative")
    ax1.legend()
    return fig


def plot_training_curve(
    losses: Any,
    *,
    window: int = 100,
    references: dict[str, float] | None = None,
    ylabel: str = "loss",
    ylim: tuple[float, float] | None = None,
) -> Any:
    """A training loss curve, smoothed, against horizontal reference levels.

    ``losses`` holds one loss per step; the curve is its moving average over ``window``
    steps (plotted at the window's last step). ``references`` maps a label to a level
    (for example the validation loss of a baseline), drawn as horizontal lines in
    distinct styles. Chapter 2 compares its MLP with the n-grams of Chapter 1 with it.
    Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    y = _series("losses", losses)
    if (
        isinstance(window, bool)
        or not isinstance(window, int | np.integer)
        or not (1 <= window <= len(y))
    ):
        raise ValueError(f"window must be an integer in [1, {len(y)}], got {window!r}")
    smooth = np.convolve(y, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots()
    ax.plot(np.arange(len(smooth)) + window, smooth, label=f"training ({window}-step average)")
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for i, (label, level) in enumerate((references or {}).items()):
        ax.axhline(
            float(level), ls=styles[i % len(styles)], color=PALETTE[1 + i % 6], lw=1.2, label=label
        )
    ax.set(xlabel="step", ylabel=ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend()
    return fig


def plot_reward_kl(
    methods: dict[str, dict[str, Any]],
    *,
    reference: float | None = None,
    xlabel: str = "KL(policy || reference), nats per response",
    ylabel: str = "mean reward",
    ax: Any = None,
    annotate: bool = True,
) -> Any:
    """Policies as points of (KL from the reference, mean reward), one colour and marker
    per method, each point with its standard errors as error bars (Chapter 17).

    ``methods`` maps a method's name (``"DPO"``, ``"PPO"``) to ``{label: score}`` where a
    score has ``kl``, ``reward``, ``kl_sem`` and ``reward_sem`` (an
    :class:`llmbook.reward.PolicyScore`, or a tuple of these four in that order). A
    method's points are joined in order of KL and labelled (e.g. by their beta); a method
    with no points is left out. ``reference`` marks the reference policy's reward at
    KL = 0. ``ax`` draws into existing axes (e.g. a zoomed panel) instead of a new
    figure; ``annotate=False`` leaves the labels out. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(methods, dict) or not any(methods.values()):
        raise ValueError(
            f"methods must be a dict of name -> {{label: score}} with a point, got {methods!r:.60}"
        )
    if ax is None:
        fig, ax = plt.subplots()
    elif not hasattr(ax, "errorbar"):
        raise ValueError(f"ax must be matplotlib axes or None, got {type(ax).__name__}")
    else:
        fig = ax.figure
    for m, (name, points) in enumerate(methods.items()):
        if not isinstance(points, dict):
            raise ValueError(f"methods[{name!r}] must be a dict of label -> score")
        rows = []
        for label, score in points.items():
            if isinstance(score, tuple | list) and len(score) == 4:
                kl, reward, kl_sem, reward_sem = score
            else:
                try:
                    kl, reward = score.kl, score.reward
                    kl_sem, reward_sem = score.kl_sem, score.reward_sem
                except AttributeError:
                    raise ValueError(
                        f"methods[{name!r}][{label!r}] must be a PolicyScore or "
                        f"(kl, reward, kl_sem, reward_sem), got {score!r:.60}"
                    ) from None
            rows.append((float(kl), float(reward), float(kl_sem), float(reward_sem), label))
        if not rows:
            continue
        rows.sort()
        colour, marker = PALETTE[m % len(PALETTE)], "osD^v<>"[m % 7]
        kls, rewards, kl_sems, reward_sems, labels = zip(*rows, strict=True)
        ax.errorbar(kls, rewards, xerr=kl_sems, yerr=reward_sems, fmt=marker + "-",
                    color=colour, capsize=2, label=name)  # fmt: skip
        for x, y, label in zip(kls, rewards, labels, strict=True) if annotate else ():
            ax.annotate(str(label), (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=8, color=colour)  # fmt: skip
    if reference is not None:
        ax.plot([0.0], [float(reference)], "k*", ms=10, label="reference")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_xlim(left=-0.02 * max(1.0, ax.get_xlim()[1]))
    ax.legend()
    return fig
