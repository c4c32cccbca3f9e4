"""The figures of Chapters 1 and 2 (``llmbook.plotting``): train/validation curves against
a hyperparameter, functions beside their derivatives, and a smoothed training curve
against reference levels; each draws exactly its data and rejects bad input clearly."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llmbook.plotting import (
    plot_functions_and_derivatives,
    plot_train_valid,
    plot_training_curve,
)


def _lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {ln.get_label(): (ln.get_xdata(), ln.get_ydata()) for ln in ax.get_lines()}


# ------------------------------------------------------------------ plot_train_valid
def test_train_valid_draws_both_curves_and_skips_missing_points():
    x = [1, 2, 3, 4]
    curves = {
        "a": ([4.0, 3.0, 2.0, 1.0], [4.5, 3.5, 3.0, 3.2]),
        "b": ([4.0, 3.0, np.nan, np.nan], [4.6, 3.6, np.nan, np.nan]),
    }
    fig = plot_train_valid(x, curves, xlabel="n", ylabel="bits", baseline=("uniform", 6.0))
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_array_equal(lines["a, validation"][1], [4.5, 3.5, 3.0, 3.2])
    np.testing.assert_array_equal(lines["a, training"][1], [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(lines["b, validation"][0], [1, 2])  # NaNs left out
    # one colour per model: training and validation of a model share it
    la = [ln for ln in ax.get_lines() if ln.get_label().startswith("a,")]
    assert la[0].get_color() == la[1].get_color()
    assert la[1].get_linestyle() == "--" and la[0].get_linestyle() == "-"
    baseline = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [6.0, 6.0]]
    assert len(baseline) == 1
    assert any(t.get_text() == "uniform" for t in ax.texts)
    assert ax.get_xlabel() == "n" and ax.get_ylabel() == "bits"
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1.06 * 6.0  # room above
    plt.close(fig)


@pytest.mark.parametrize(
    ("x", "curves", "match"),
    [
        ([], {"a": ([], [])}, "x must be a non-empty"),
        ([1, 2], {}, "curves must be a non-empty dict"),
        ([1, 2], {"a": [1.0, 2.0, 3.0]}, r"curves\['a'\] must be a pair"),
        ([1, 2], {"a": ([1.0], [1.0, 2.0])}, r"curves\['a'\] must hold two sequences"),
        (["a", "b"], {"a": ([1.0, 2.0], [1.0, 2.0])}, "x must hold numbers"),
    ],
)
def test_train_valid_rejects_bad_input(x, curves, match):
    with pytest.raises(ValueError, match=match):
        plot_train_valid(x, curves, xlabel="x", ylabel="y")
    plt.close("all")


# --------------------------------------------------- plot_functions_and_derivatives
def test_functions_and_derivatives_in_two_panels():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    values = {"relu": torch.relu(x), "square": x**2}
    derivatives = {"relu": (x > 0).double(), "square": 2 * x}
    fig = plot_functions_and_derivatives(x, values, derivatives)
    left, right = fig.axes
    np.testing.assert_allclose(_lines(left)["square"][1], (x**2).numpy())
    np.testing.assert_allclose(_lines(right)["square"][1], (2 * x).numpy())
    np.testing.assert_allclose(_lines(right)["relu"][0], x.numpy())
    assert left.get_title() == "activation" and right.get_title() == "derivative"
    plt.close(fig)


@pytest.mark.parametrize(
    ("values", "derivatives", "match"),
    [
        ({}, {}, "non-empty dicts with the same labels"),
        ({"f": [1.0, 2.0, 3.0]}, {"g": [1.0, 2.0, 3.0]}, "same labels"),
        ({"f": [1.0, 2.0]}, {"f": [1.0, 2.0]}, r"values\['f'\] has 2 points, x has 3"),
        ({"f": [1.0, np.nan, 3.0]}, {"f": [1.0, 2.0, 3.0]}, "finite numbers"),
    ],
)
def test_functions_and_derivatives_reject_bad_input(values, derivatives, match):
    with pytest.raises(ValueError, match=match):
        plot_functions_and_derivatives([0.0, 1.0, 2.0], values, derivatives)
    plt.close("all")


# -------------------------------------------------------------- plot_training_curve
def test_training_curve_is_the_moving_average_at_the_window_end():
    losses = np.arange(10, dtype=float)  # the average of 3 consecutive is the middle one
    fig = plot_training_curve(losses, window=3, references={"base": 4.0, "other": 2.0})
    ax = fig.axes[0]
    xs, ys = _lines(ax)["training (3-step average)"]
    np.testing.assert_array_equal(xs, np.arange(8) + 3)
    np.testing.assert_allclose(ys, np.arange(8) + 1.0)
    lines = _lines(ax)
    assert list(lines["base"][1]) == [4.0, 4.0] and list(lines["other"][1]) == [2.0, 2.0]
    assert lines.keys() >= {"base", "other"}
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines()}
    assert styles["base"] != styles["other"]  # references are told apart by style
    plt.close(fig)


def test_training_curve_accepts_a_tensor_and_sets_limits():
    fig = plot_training_curve(torch.ones(5), window=5, ylim=(0.0, 2.0), ylabel="bits")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 2.0) and ax.get_ylabel() == "bits"
    plt.close(fig)


@pytest.mark.parametrize("window", [0, 11, 2.5, True])
def test_training_curve_rejects_a_bad_window(window):
    with pytest.raises(ValueError, match="window must be an integer in"):
        plot_training_curve(np.ones(10), window=window)
    plt.close("all")


def test_training_curve_rejects_non_finite_losses():
    with pytest.raises(ValueError, match="finite numbers"):
        plot_training_curve([1.0, np.inf, 2.0], window=1)
    plt.close("all")
