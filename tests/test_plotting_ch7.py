"""The attention-map grid of Chapter 7 (``llmbook.plotting.plot_attention_grid``): one
panel per head, one colour scale, labels on the outer axes, clear errors for bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llmbook.attention import causal_mask
from llmbook.plotting import plot_attention_grid


def _weights(n_rows: int, n_cols: int, T: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(n_rows, n_cols, T, T, generator=g)
    return torch.softmax(scores.masked_fill(~causal_mask(T), -torch.inf), dim=-1)


def test_one_panel_per_head_with_the_weights_on_one_scale():
    w = _weights(2, 3, 5)
    fig = plot_attention_grid(w, list("abcde"))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6  # plus the colour bar's axes
    assert [ax.get_title() for ax in panels[:3]] == [
        "layer 1, head 1",
        "layer 1, head 2",
        "layer 1, head 3",
    ]
    assert panels[4].get_title() == "layer 2, head 2"
    for n, ax in enumerate(panels):  # row-major order: panel n is weights[n // 3, n % 3]
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), w[n // 3, n % 3].numpy())
        assert ax.images[0].get_clim() == (0, 1)
    assert fig.axes[-1].get_ylabel() == "attention weight"
    plt.close(fig)


def test_labels_only_on_the_outer_axes():
    fig = plot_attention_grid(_weights(2, 2, 4).numpy(), ["w", "x", "y", "z"])
    top_left, top_right, bottom_left, bottom_right = [ax for ax in fig.axes if ax.images]

    def names(ticks):
        return [t.get_text() for t in ticks]

    assert names(top_left.get_yticklabels()) == ["w", "x", "y", "z"]
    assert names(top_left.get_xticklabels()) == []
    assert names(bottom_left.get_yticklabels()) == names(bottom_left.get_xticklabels())
    assert names(bottom_right.get_xticklabels()) == ["w", "x", "y", "z"]
    assert names(bottom_right.get_yticklabels()) == []
    assert names(top_right.get_xticklabels()) == names(top_right.get_yticklabels()) == []
    plt.close(fig)


def test_one_row_and_custom_names():
    fig = plot_attention_grid(_weights(1, 4, 3)[0], row_name="head", col_name="layer")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4 and panels[3].get_title() == "head 1, layer 4"
    plt.close(fig)


@pytest.mark.parametrize(
    ("weights", "labels", "match"),
    [
        (torch.ones(3, 3), None, "n_rows, n_cols"),
        (torch.ones(1, 1, 2, 3), None, "square"),
        (torch.ones(1, 1, 3, 3, dtype=torch.long), None, "floating-point"),
        (torch.ones(1, 2, 3, 3), ["a", "b"], "labels"),
        ([[0.5]], None, "n_rows, n_cols"),
    ],
)
def test_rejects_bad_input(weights, labels, match):
    with pytest.raises(ValueError, match=match):
        plot_attention_grid(weights, labels)


def test_rejects_bad_panel_size():
    with pytest.raises(ValueError, match="panel_size"):
        plot_attention_grid(_weights(1, 1, 2), panel_size=0)
