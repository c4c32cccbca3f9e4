"""Devices, seeding and the first cell every chapter runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from llmbook._validate import check_int


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device the book computes on: CUDA when present, else the CPU.

    ``prefer`` may force ``"cpu"`` or ``"cuda"``; the environment variable
    ``LLMBOOK_DEVICE`` does the same for a whole run (the committed outputs are made with
    ``LLMBOOK_DEVICE=cpu``).
    """
    choice = prefer if prefer is not None else os.environ.get("LLMBOOK_DEVICE", "auto")
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"prefer/LLMBOOK_DEVICE must be 'auto', 'cpu' or 'cuda', got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("prefer='cuda' was asked for but torch.cuda.is_available() is False")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, NumPy's and PyTorch's generators (CPU and CUDA) with ``seed``.

    Returns a fresh ``numpy.random.Generator`` seeded with the same value, which is the
    generator chapters pass explicitly to library functions that sample.
    """
    seed = check_int("seed", seed, 0)
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)  # noqa: NPY002 - legacy global generator, seeded for safety
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def setup_notebook(seed: int = 0) -> np.random.Generator:
    """The first cell of every chapter: seeds, print options and the book's figure style.

    Keeps outputs short and stable for nbval: NumPy and torch print 4 significant decimals,
    figures use :func:`llmbook.plotting.use_book_style`, and progress bars are silenced
    when ``TQDM_DISABLE`` is set (the test run sets it).
    """
    from llmbook.plotting import use_book_style

    seed = check_int("seed", seed, 0)  # before any global setting changes
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    use_book_style()
    return seed_everything(seed)
