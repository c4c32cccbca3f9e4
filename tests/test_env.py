"""Tests of llmbook's device, seeding and notebook set-up helpers."""

import matplotlib as mpl
import numpy as np
import pytest
import torch

import llmbook
from llmbook.plotting import BOOK_STYLE


def test_version_is_one_string():
    parts = llmbook.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_get_device(monkeypatch):
    monkeypatch.setenv("LLMBOOK_DEVICE", "cpu")
    assert llmbook.get_device() == torch.device("cpu")
    monkeypatch.delenv("LLMBOOK_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert llmbook.get_device().type == expected
    with pytest.raises(ValueError, match="prefer"):
        llmbook.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            llmbook.get_device("cuda")


def test_seed_everything_reproduces_all_generators():
    rng = llmbook.seed_everything(3)
    a = (rng.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    rng = llmbook.seed_everything(3)
    b = (rng.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert a == b
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            llmbook.seed_everything(bad)


def test_setup_notebook_applies_style():
    llmbook.setup_notebook(0)
    assert mpl.rcParams["figure.facecolor"] == BOOK_STYLE["figure.facecolor"]
    assert np.get_printoptions()["precision"] == 4
