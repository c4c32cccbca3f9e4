"""The tokenization and position figures of Chapters 3 and 4 (``llmbook.plotting``): what
each panel draws, from which numbers, and clear errors for bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llmbook import positional as pos
from llmbook.plotting import (
    plot_alibi,
    plot_position_encoding,
    plot_rope_wavelengths,
    plot_score_by_distance,
    plot_vocab_length,
)


def test_plot_vocab_length_draws_the_curve_and_the_points():
    fig = plot_vocab_length([256, 512, 1024], [1000.0, 600.0, 450.0], {"words": (20_000, 240.0)})
    ax = fig.axes[0]
    curve, point = ax.get_lines()
    np.testing.assert_array_equal(curve.get_xdata(), [256, 512, 1024])
    np.testing.assert_array_equal(curve.get_ydata(), [1000.0, 600.0, 450.0])
    assert list(point.get_xdata()) == [20_000] and list(point.get_ydata()) == [240.0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["byte-level BPE", "words"]
    assert ax.get_ylim()[1] == pytest.approx(1100.0)  # room above the highest value
    plt.close(fig)


@pytest.mark.parametrize(
    ("sizes", "per_1000"),
    [([256, 512], [1.0]), ([0, 512], [1.0, 2.0]), ([], []), ("abc", [1.0, 2.0, 3.0])],
)
def test_plot_vocab_length_rejects_bad_input(sizes, per_1000):
    with pytest.raises(ValueError, match=r"sizes|tokens_per_1000"):
        plot_vocab_length(sizes, per_1000)


def test_plot_position_encoding_shows_the_matrix_on_a_fixed_scale():
    pe = pos.sinusoidal_encoding(16, 8)
    fig = plot_position_encoding(pe)
    image = fig.axes[0].images[0]
    np.testing.assert_allclose(np.asarray(image.get_array()), pe.numpy())
    assert image.get_clim() == (-1, 1)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    plt.close(fig)


def test_plot_position_encoding_rejects_a_vector():
    with pytest.raises(ValueError, match="pe must be a non-empty 2-d array"):
        plot_position_encoding(torch.zeros(8))


def test_plot_alibi_draws_head_one_and_a_line_per_head():
    slopes = pos.alibi_slopes(4)
    bias = pos.alibi_bias(4, 10)
    fig = plot_alibi(bias, slopes)
    left, right = fig.axes[0], fig.axes[1]
    shown = np.ma.filled(np.asarray(left.images[0].get_array(), dtype=float), np.nan)
    finite = np.isfinite(bias[0].numpy())
    np.testing.assert_allclose(shown[finite], bias[0].numpy()[finite])
    assert np.isnan(shown[~finite]).all()  # the masked upper triangle is left blank
    lines = right.get_lines()
    assert len(lines) == 4
    for line, m in zip(lines, slopes.tolist(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), np.exp(-m * np.arange(10)))
    assert right.get_yscale() == "log"
    plt.close(fig)


def test_plot_alibi_rejects_mismatched_heads():
    with pytest.raises(ValueError, match="n_head = len\\(slopes\\) = 3"):
        plot_alibi(pos.alibi_bias(4, 6), pos.alibi_slopes(3))


def test_plot_rope_wavelengths_plots_two_pi_over_theta():
    freqs = {
        "RoPE": pos.rope_frequencies(16),
        "PI": pos.rope_frequencies(16, scaling="linear", scale=4.0),
    }
    fig = plot_rope_wavelengths(freqs, {"trained": 512.0})
    ax = fig.axes[0]
    rope, pi, mark = ax.get_lines()
    np.testing.assert_allclose(rope.get_ydata(), 2 * np.pi / freqs["RoPE"].numpy())
    np.testing.assert_allclose(pi.get_ydata(), 4 * rope.get_ydata())
    assert list(mark.get_ydata()) == [512.0, 512.0]
    assert [t.get_text() for t in ax.texts] == ["trained"]
    plt.close(fig)


@pytest.mark.parametrize("freqs", [{}, {"zero": torch.zeros(4)}, [torch.ones(4)]])
def test_plot_rope_wavelengths_rejects_bad_input(freqs):
    with pytest.raises(ValueError, match="freqs"):
        plot_rope_wavelengths(freqs)


def test_plot_score_by_distance_near_panel_and_binned_means():
    N = 1001
    constant = np.full(N, 0.5)
    ramp = np.linspace(1.0, 0.0, N)
    fig = plot_score_by_distance({"flat": constant, "ramp": ramp}, near=8, mark=100)
    near, far = fig.axes
    flat_near, ramp_near = near.get_lines()
    np.testing.assert_array_equal(flat_near.get_xdata(), np.arange(9))
    np.testing.assert_array_equal(ramp_near.get_ydata(), ramp[:9])
    flat_far, ramp_far = far.get_lines()[:2]
    np.testing.assert_allclose(flat_far.get_ydata(), 0.5)  # a bin mean of a constant
    assert np.all(np.diff(ramp_far.get_ydata()) < 0)  # means of a falling line fall
    assert np.all(np.diff(ramp_far.get_xdata()) > 0) and far.get_xscale() == "log"
    assert list(far.get_lines()[2].get_xdata()) == [100, 100]  # the mark
    plt.close(fig)


def test_plot_score_by_distance_rejects_ragged_or_short_curves():
    with pytest.raises(ValueError, match="one common length"):
        plot_score_by_distance({"a": np.ones(100), "b": np.ones(99)})
    with pytest.raises(ValueError, match="one common length"):
        plot_score_by_distance({"a": np.ones(10)}, near=64)
