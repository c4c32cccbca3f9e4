"""The attention figures of Chapters 5 and 6 (``llmbook.plotting``): panels, labels,
colours and clear errors for bad input."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llmbook.attention import causal_mask, sliding_window_mask
from llmbook.plotting import MASK_COLOURS, plot_attention_weights, plot_masks


def test_plot_masks_one_panel_per_mask():
    masks = {"causal": causal_mask(6), "window": sliding_window_mask(6, window=2)}
    fig = plot_masks(masks, xlabel="key", ylabel="query")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["causal", "window"]
    assert all(ax.get_xlabel() == "key" and ax.get_ylabel() == "query" for ax in axes)
    # the image is the mask itself: 1 where attention is allowed, 0 elsewhere
    shown = axes[1].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), sliding_window_mask(6, window=2).numpy())
    cmap = axes[0].images[0].get_cmap()
    assert matplotlib.colors.to_hex(cmap(1.0)) == MASK_COLOURS[1].lower()
    assert matplotlib.colors.to_hex(cmap(0.0)) == MASK_COLOURS[0].lower()
    plt.close(fig)


def test_plot_masks_single_and_rectangular():
    fig = plot_masks({"cross": np.ones((3, 5), dtype=bool)})
    assert len(fig.axes) == 1 and fig.axes[0].images[0].get_array().shape == (3, 5)
    plt.close(fig)


@pytest.mark.parametrize(
    "masks",
    [{}, [causal_mask(3)], {"float": torch.ones(3, 3)}, {"3-d": torch.ones(1, 3, 3).bool()}],
)
def test_plot_masks_rejects_bad_input(masks):
    with pytest.raises(ValueError, match="mask"):
        plot_masks(masks)


def test_plot_attention_weights_labels_and_colour_bar():
    w = torch.softmax(torch.randn(4, 4).masked_fill(~causal_mask(4), -torch.inf), dim=-1)
    fig = plot_attention_weights(w, ["a", "b", "c", "d"])
    ax, cbar = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert cbar.get_ylabel() == "attention weight"
    assert ax.images[0].get_clim() == (0, 1)
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), w.numpy())
    plt.close(fig)


@pytest.mark.parametrize(
    ("weights", "labels", "match"),
    [
        (torch.ones(3), None, "2-d"),
        (torch.ones(3, 3, dtype=torch.long), None, "floating-point"),
        (torch.ones(3, 3), ["a", "b"], "labels"),
        (torch.ones(2, 3), ["a", "b"], "labels"),
    ],
)
def test_plot_attention_weights_rejects_bad_input(weights, labels, match):
    with pytest.raises(ValueError, match=match):
        plot_attention_weights(weights, labels)
