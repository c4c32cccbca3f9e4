"""The figure of Chapter 17 (``llmbook.plotting.plot_reward_kl``): policies as points of
(KL, reward) with error bars, one series per method; bad input is refused clearly."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from llmbook.plotting import plot_reward_kl
from llmbook.reward import PolicyScore


def test_points_are_drawn_in_order_of_kl_with_labels_and_the_reference():
    dpo = {
        "1.0": PolicyScore(0.04, 0.01, 1.5, 0.1, ()),
        "0.1": (7.0, 0.07, 0.4, 0.01),
    }
    fig = plot_reward_kl({"DPO": dpo, "PPO": {}}, reference=0.01)
    ax = fig.axes[0]
    data = ax.containers[0].lines[0]  # the errorbar's data line
    assert ax.containers[0].get_label() == "DPO" and len(ax.containers) == 1
    np.testing.assert_allclose(np.asarray(data.get_xdata(), float), [1.5, 7.0])  # sorted by KL
    np.testing.assert_allclose(np.asarray(data.get_ydata(), float), [0.04, 0.07])
    assert sorted(t.get_text() for t in ax.texts) == ["0.1", "1.0"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["reference", "DPO"] or legend == ["DPO", "reference"]  # PPO: no points
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert star and list(star[0].get_xdata()) == [0.0] and list(star[0].get_ydata()) == [0.01]
    assert "KL" in ax.get_xlabel() and ax.get_ylabel() == "mean reward"
    plt.close(fig)


@pytest.mark.parametrize(
    ("methods", "match"),
    [
        ({}, "methods must be"),
        ({"DPO": {}}, "methods must be"),
        ({"DPO": {"a": (1.0, 2.0)}}, r"methods\['DPO'\]\['a'\]"),
        ({"DPO": [1]}, "methods must be|methods\\['DPO'\\] must be a dict"),
    ],
)
def test_bad_input_is_refused(methods, match):
    with pytest.raises(ValueError, match=match):
        plot_reward_kl(methods)


def test_draws_into_given_axes_without_labels():
    fig, (a1, a2) = plt.subplots(1, 2)
    out = plot_reward_kl({"DPO": {"x": (1.0, 0.1, 0.1, 0.01)}}, ax=a2, annotate=False)
    assert out is fig and len(a2.containers) == 1 and not a2.texts
    assert not a1.containers
    with pytest.raises(ValueError, match="ax must be"):
        plot_reward_kl({"DPO": {"x": (1.0, 0.1, 0.1, 0.01)}}, ax="left")
    plt.close(fig)
