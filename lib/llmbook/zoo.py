r"""The model zoo: small models trained once, cached on disk, loaded by name (Chapter 7).

A :class:`Recipe` fixes everything a model depends on: the corpus splits, the tokenizer,
the :class:`~llmbook.gpt.GPTConfig` and the :class:`~llmbook.train.TrainConfig` (whose seed
also seeds the initialisation). :func:`load` trains a recipe on first use with
:func:`llmbook.train.train` and caches the result, so later chapters reuse one trained
model instead of training it again.

**Cache layout.** Under :func:`cache_dir` (``$LLMBOOK_CACHE``, else ``~/.cache/llmbook``)::

    data/<data key>/        tokenizer.bpe, train.bin, val.bin, data.json  (prepare_data)
    zoo/<name>-<key>/       checkpoint.pt, tokenizer.bpe, manifest.json     (load)

A key is the first 16 hex digits of the SHA-256 of the canonical JSON of the recipe
without its description (for ``data/``, of its data fields) and the llmbook version, so
changing either gives a new folder, while rewording a description retrains nothing. Each
folder is built under a temporary name and renamed into place, so an interrupted run never
leaves half an entry. Its JSON manifest records the recipe, the key,
the version and the SHA-256 of every file; :func:`load` checks them all, and an entry that
is corrupt (a hash differs, a file is unreadable) or stale (key, version or recipe differ)
is reported with a warning and rebuilt, never used.

**Scoring text.** :func:`evaluate_text` scores every token of a text exactly once, in
non-overlapping windows, so models with different tokenizers are compared in bits per
character (Chapter 1's :func:`llmbook.information.bits_per_character`).

**Command line.** ``python -m llmbook.zoo list`` shows the recipes and whether each is
cached; ``python -m llmbook.zoo build NAME [NAME ...]`` trains (or finds) them (a name may
also be a group of ``GROUPS``, e.g. ``scaling-grid``, Chapter 10's study) with
:func:`load` and prints where each is cached and its metrics (:func:`main`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmbook import __version__
from llmbook._env import get_device
from llmbook._validate import check_bool, check_int, check_number, check_type, is_int
from llmbook.corpus import SPLITS, shakespeare
from llmbook.counting import count_parameters
from llmbook.data import open_tokens, write_tokens
from llmbook.gpt import GPT, GPTConfig
from llmbook.information import bits_per_byte, bits_per_character
from llmbook.longcontext import needle_accuracy, train_needle
from llmbook.tokenizer import BPETokenizer
from llmbook.train import History, TrainConfig, load_checkpoint, save_checkpoint, train

#: The ways a recipe turns text into ids, learned byte-level BPE or raw UTF-8 bytes (V = 256).
TOKENIZERS: tuple[str, ...] = ("bpe", "bytes")
#: The tasks a recipe can train from scratch, next-token prediction over the text
#: (``"lm"``) or the needle-in-a-haystack retrieval of
#: :func:`llmbook.longcontext.train_needle` (``"needle"``).
TASKS: tuple[str, ...] = ("lm", "needle")
#: Tasks that start from another zoo model, a recipe's ``base`` (fine-tuning, alignment,
#: distillation; Chapters 15-17): each maps to ``"module:function"``, imported only when
#: such a recipe is built. The function is called as ``fn(recipe, base, device,
#: progress)`` with ``base`` the loaded :class:`ZooModel` (its model must not be changed:
#: copy it) and returns ``(model, history, metrics)``: a :class:`~llmbook.gpt.GPT` of
#: ``recipe.model_config()``, a :class:`~llmbook.train.History` and a dict of JSON-ready
#: metrics. Its seed is ``recipe.train["seed"]`` (the global generator is seeded with it
#: first); its hyperparameters are ``recipe.train`` (a
#: :class:`~llmbook.train.TrainConfig`) and ``recipe.task_args``.
DERIVED_TASKS: dict[str, str] = {
    "dpo": "llmbook.dpo:zoo_dpo",
    "ppo": "llmbook.rlhf:zoo_ppo",
    "grpo": "llmbook.rlhf:zoo_grpo",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MODEL_FIELDS = frozenset(f.name for f in fields(GPTConfig)) - {"vocab_size"}
_TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """A named, deterministic way to build and train a zoo model (Chapter 7).

    Attributes:
        name: the model's name (lower-case letters, digits, ``.``, ``_``, ``-``).
        description: one line for the zoo's table.
        model: :class:`~llmbook.gpt.GPTConfig` fields, except ``vocab_size`` (the
            tokenizer's).
        train: :class:`~llmbook.train.TrainConfig` fields; ``block_size`` defaults to the
            model's.
        tokenizer: ``"bpe"`` (trained on the training text) or ``"bytes"``.
        vocab_size: the BPE vocabulary size (``None`` for ``"bytes"``).
        train_split, val_split: the :func:`llmbook.corpus.shakespeare` splits.
        max_train_chars, max_val_chars: keep only the first this-many characters of each
            split (``None``: all), for quick recipes.
        task: ``"lm"`` (next-token prediction) or ``"needle"`` (retrieval batches built
            from the training split, :func:`llmbook.longcontext.train_needle`, Chapter 14).
            Left out of :meth:`to_dict` (and so of the cache key) when it is ``"lm"``, so
            the keys of the recipes that predate it did not change. Or a task of
            :data:`DERIVED_TASKS`, trained from the zoo model named by ``base``.
        base: for a task of :data:`DERIVED_TASKS`, the name of the recipe the run starts
            from (the policy's initialisation, or a teacher); ``None`` otherwise. The
            base's key is part of this recipe's key, so retraining the base retrains it.
            The data fields (tokenizer, splits) must equal the base's.
        task_args: the derived task's own hyperparameters (JSON-ready values).
            ``base`` and ``task_args`` are left out of :meth:`to_dict` when unset.
    """

    name: str
    description: str
    model: dict[str, Any]
    train: dict[str, Any]
    tokenizer: str = "bpe"
    vocab_size: int | None = 1024
    train_split: str = "train"
    val_split: str = "validation"
    max_train_chars: int | None = None
    max_val_chars: int | None = None
    task: str = "lm"
    base: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"name must be lower-case letters, digits, '.', '_' or '-', got {self.name!r}"
            )
        if not isinstance(self.description, str):
            raise ValueError(f"description must be a str, got {type(self.description).__name__}")
        for attr, allowed in (("model", _MODEL_FIELDS), ("train", _TRAIN_FIELDS)):
            value = getattr(self, attr)
            if not isinstance(value, dict):
                raise ValueError(f"{attr} must be a dict of fields, got {type(value).__name__}")
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise ValueError(f"{attr} has unknown fields {unknown}; allowed: {sorted(allowed)}")
            object.__setattr__(self, attr, dict(value))  # a private copy
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.task not in TASKS and self.task not in DERIVED_TASKS:
            raise ValueError(
                f"task must be one of {TASKS + tuple(DERIVED_TASKS)}, got {self.task!r}"
            )
        if (self.base is None) == (self.task in DERIVED_TASKS):
            raise ValueError(
                f"base must name a zoo recipe exactly when task is one of "
                f"{tuple(DERIVED_TASKS)}, got base={self.base!r} with task={self.task!r}"
            )
        if self.base is not None and (not isinstance(self.base, str) or self.base == self.name):
            raise ValueError(f"base must be another recipe's name, got {self.base!r}")
        if not isinstance(self.task_args, dict) or not all(
            isinstance(k, str) for k in self.task_args
        ):
            raise ValueError(f"task_args must be a dict with str keys, got {self.task_args!r:.60}")
        try:
            task_args = json.loads(json.dumps(self.task_args))
        except (TypeError, ValueError):
            raise ValueError(
                f"task_args must hold JSON-ready values, got {self.task_args!r:.60}"
            ) from None
        object.__setattr__(self, "task_args", task_args)  # a private, JSON-ready copy
        if self.tokenizer == "bytes" and self.vocab_size not in (None, 256):
            raise ValueError(
                f"vocab_size must be None (or 256) for tokenizer='bytes', got {self.vocab_size!r}"
            )
        if self.tokenizer == "bpe" and not (
            is_int(self.vocab_size) and 256 <= self.vocab_size <= 2**32  # type: ignore[operator]
        ):
            raise ValueError(
                f"vocab_size must be an integer >= 256 for BPE, got {self.vocab_size!r}"
            )
        if self.vocab_size is not None:
            object.__setattr__(self, "vocab_size", int(self.vocab_size))
        for attr in ("train_split", "val_split"):
            if getattr(self, attr) not in SPLITS:
                raise ValueError(f"{attr} must be one of {SPLITS}, got {getattr(self, attr)!r}")
        for attr in ("max_train_chars", "max_val_chars"):
            n = getattr(self, attr)
            if n is not None and (not is_int(n) or n < 1):
                raise ValueError(f"{attr} must be None or a positive integer, got {n!r}")
            object.__setattr__(self, attr, None if n is None else int(n))
        mcfg, tcfg = self.model_config(), self.train_config()  # validate both
        if tcfg.block_size > mcfg.block_size:
            raise ValueError(
                f"train block_size={tcfg.block_size} exceeds the model's {mcfg.block_size}"
            )

    @property
    def model_vocab_size(self) -> int:
        """The model's vocabulary size :math:`V` (the BPE vocabulary size, or 256 for bytes)."""
        return 256 if self.tokenizer == "bytes" else int(self.vocab_size)  # type: ignore[arg-type]

    def model_config(self) -> GPTConfig:
        """The recipe's :class:`~llmbook.gpt.GPTConfig` (Chapter 7)."""
        return GPTConfig(vocab_size=self.model_vocab_size, **self.model)

    def train_config(self) -> TrainConfig:
        """The recipe's :class:`~llmbook.train.TrainConfig` (Chapter 7)."""
        block = self.model.get("block_size", GPTConfig.block_size)
        return TrainConfig(**{"block_size": block, **self.train})

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready data (tuples become lists); ``task`` only when it is not
        ``"lm"``, ``base`` and ``task_args`` only when set."""
        d = json.loads(json.dumps(asdict(self)))
        if d["task"] == "lm":
            del d["task"]
        if d["base"] is None:
            del d["base"]
        if not d["task_args"]:
            del d["task_args"]
        return d

    def identity(self) -> dict[str, Any]:
        """:meth:`to_dict` without the description: what the model depends on, what
        :func:`recipe_key` hashes and the manifest stores (Chapter 7); with a ``base``,
        also the base's key (``base_key``)."""
        d = self.to_dict()
        del d["description"]
        if self.base is not None:
            d["base_key"] = recipe_key(get_recipe(self.base))
        return d

    def data_spec(self) -> dict[str, Any]:
        """The fields that decide the tokenizer and the token files (Chapter 7)."""
        names = ("tokenizer", "vocab_size", "train_split", "val_split", "max_train_chars",
                 "max_val_chars")  # fmt: skip
        return {k: getattr(self, k) for k in names}


#: The book's CPU model's shape (:class:`~llmbook.gpt.GPTConfig` fields): 4 layers,
#: d_model 128, context 64; the recipes derived from it (Chapters 16-17) share it.
CPU_MODEL: dict[str, Any] = dict(
    block_size=64,
    n_layer=4,
    n_head=4,
    d_model=128,
    bias=False,
    dropout=0.0,
    attn_implementation="explicit",
)

#: The zoo.
#:
#: shakespeare-bpe-small is the book's CPU model (chapter 7 loads it). It must train in
#: at most 7 minutes on the slow kind of 2-core CPU (AVX2, no native bf16, so float32).
#: The previous recipe (BPE V=4096, 3,000 steps) reached 1.996 bits/char but took 14.5
#: minutes there (289 ms a step); a third of its FLOPs were the output head (6 d_model V
#: per token). Measured on a 2-core AMD EPYC (float32 matmul ceiling 217 GFLOP/s, 1.5x
#: the slow kind's 144) in float32, one step of B=32 x T=64: V=4096 158 ms, V=2048 112 ms,
#: V=1024 93 ms; fused attention 104 ms at V=2048. Validation bits/char (stride T/2,
#: float32) after 2,000 steps: V=2048 2.055, V=1024 2.094, against 2.145 for chapter 1's
#: best n-gram (Kneser-Ney, n = 7). 1,800 steps gave 2.072 (float32) and 2.077 (bf16),
#: but trained in 240 s there in float32, ~7 minutes on the slow kind (steps there take
#: 1.8x as long). Chosen: V=2048 and 1,600 steps (3.3M tokens, ~5.6 minutes on the slow
#: kind) with 100 warmup steps to a peak learning rate of 3e-3 (bf16: 2.087 bits/char;
#: the previous recipe's 2e-3 gave 2.102 at 1,600 steps). Attention is the explicit path:
#: torch's fused CPU attention has a bf16 backward several times slower than its fp32 one,
#: which would cost the CPUs that train in bf16 more than it saves the others (7%).
#: benchmarks/RESULTS.md has the measurements.
#: shakespeare-bpe-medium is meant for a GPU (same data and tokenizer); it has not been
#: trained to the end here. shakespeare-bpe-tiny is a quick recipe for tests and sketches.
RECIPES: dict[str, Recipe] = {
    "shakespeare-bpe-tiny": Recipe(
        name="shakespeare-bpe-tiny",
        description="4-layer, 128-wide GPT on Shakespeare's training plays, BPE V=1024",
        model=dict(
            block_size=128,
            n_layer=4,
            n_head=4,
            d_model=128,
            bias=False,
            dropout=0.0,
            attn_implementation="fused",
        ),
        train=dict(
            max_steps=200,
            batch_size=16,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=20,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=50,
            eval_batches=8,
            seed=0,
        ),
        tokenizer="bpe",
        vocab_size=1024,
    ),
    "shakespeare-bpe-small": Recipe(
        name="shakespeare-bpe-small",
        description="4-layer, 128-wide GPT, context 64, BPE V=2048, 1600 steps (the CPU model)",
        model=CPU_MODEL,
        train=dict(
            max_steps=1600,
            batch_size=32,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=100,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=250,
            eval_batches=20,
            seed=0,
            precision="auto",
        ),
        tokenizer="bpe",
        vocab_size=2048,
    ),
    # Chapter 13's draft model for speculative decoding: the data, tokenizer and splits
    # of shakespeare-bpe-small (so the same data key and the same token ids), one
    # 64-wide layer, a fraction of the target's cost per call; float32 everywhere.
    "shakespeare-bpe-draft": Recipe(
        name="shakespeare-bpe-draft",
        description="1-layer, 64-wide draft GPT for speculative decoding, BPE V=2048",
        model=dict(
            block_size=64,
            n_layer=1,
            n_head=4,
            d_model=64,
            bias=False,
            dropout=0.0,
            attn_implementation="explicit",
        ),
        train=dict(
            max_steps=480,
            batch_size=32,
            lr=5e-3,
            min_lr=5e-4,
            warmup_steps=30,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=240,
            eval_batches=10,
            seed=0,
            precision="fp32",
        ),
        tokenizer="bpe",
        vocab_size=2048,
    ),
    "shakespeare-bpe-medium": Recipe(
        name="shakespeare-bpe-medium",
        description="6-layer, 384-wide GPT, context 256, BPE V=2048, dropout 0.2 (for a GPU)",
        model=dict(
            block_size=256,
            n_layer=6,
            n_head=6,
            d_model=384,
            bias=False,
            dropout=0.2,
            attn_implementation="fused",
        ),
        train=dict(
            max_steps=3000,
            batch_size=64,
            lr=1e-3,
            min_lr=1e-4,
            warmup_steps=100,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=250,
            eval_batches=20,
            seed=0,
            precision="auto",
        ),
        tokenizer="bpe",
        vocab_size=2048,
    ),
    # Chapter 14's RoPE model for context extension and attention sinks: the data,
    # tokenizer and shape of shakespeare-bpe-small (the same data key), RoPE instead of
    # learned positions, trained at context 64 for fewer steps; float32 everywhere.
    "shakespeare-bpe-rope": Recipe(
        name="shakespeare-bpe-rope",
        description="4-layer, 128-wide RoPE GPT, context 64, BPE V=2048 (context extension)",
        model=dict(
            block_size=64,
            n_layer=4,
            n_head=4,
            d_model=128,
            positional="rope",
            bias=False,
            dropout=0.0,
            attn_implementation="explicit",
        ),
        train=dict(
            max_steps=600,
            batch_size=32,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=50,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=300,
            eval_batches=10,
            seed=0,
            precision="fp32",
        ),
        tokenizer="bpe",
        vocab_size=2048,
    ),
    # Chapter 14's needle-in-a-haystack model: byte-level (a digit is one token), RoPE,
    # trained only on retrieval batches of 128 tokens from the training plays
    # (llmbook.longcontext.train_needle): find the one-digit number hidden in the text.
    "needle-bytes-rope": Recipe(
        name="needle-bytes-rope",
        description="2-layer, 64-wide byte-level RoPE GPT trained on needle retrieval, T=128",
        model=dict(
            block_size=128,
            n_layer=2,
            n_head=4,
            d_model=64,
            positional="rope",
            bias=False,
            dropout=0.0,
            attn_implementation="explicit",
        ),
        train=dict(
            max_steps=250,
            batch_size=32,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=30,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=50,
            eval_batches=4,
            log_interval=50,
            seed=0,
            precision="fp32",
        ),
        tokenizer="bytes",
        vocab_size=None,
        task="needle",
    ),
    # Chapter 17: DPO from shakespeare-bpe-small (llmbook.dpo.zoo_dpo) on pairs of its own
    # samples: 1,024 training prompts of 8 tokens, two 24-token responses each, the one
    # with the higher lexicon reward chosen (llmbook.reward); one recipe per beta, each
    # 100 steps of 32 pairs at a constant learning rate of 1e-4 after 10 warmup steps,
    # no weight decay, float32.
    **{
        f"comedy-dpo-beta-{beta}": Recipe(
            name=f"comedy-dpo-beta-{beta}",
            description=f"DPO of shakespeare-bpe-small toward comic lines, beta = {beta}",
            model=CPU_MODEL,
            train=dict(
                max_steps=100,
                batch_size=32,
                lr=1e-4,
                min_lr=1e-4,
                warmup_steps=10,
                weight_decay=0.0,
                grad_clip=1.0,
                seed=0,
                precision="fp32",
            ),
            vocab_size=2048,
            task="dpo",
            base="shakespeare-bpe-small",
            task_args={"beta": beta, "n_prompts": 1024},
        )
        for beta in (0.03, 0.1, 0.3, 1.0)
    },
    # Chapter 16: PPO from shakespeare-bpe-small (llmbook.rlhf.zoo_ppo) on the comedy
    # lexicon reward with a per-token KL penalty beta: 30 rollouts of 64 training prompts
    # (8 tokens) with 24-token responses, 2 epochs of 2 minibatches each, Adam at 3e-4
    # (the value head, a small MLP on the frozen reference's features, at 1e-3), float32.
    # beta = 0 and 0.01 lie below the beta at which repeating one comic word pays.
    **{
        f"comedy-ppo-beta-{beta}": Recipe(
            name=f"comedy-ppo-beta-{beta}",
            description=f"PPO of shakespeare-bpe-small toward comic lines, KL beta = {beta}",
            model=CPU_MODEL,
            train=dict(
                max_steps=30, batch_size=64, lr=3e-4, warmup_steps=0, seed=0, precision="fp32"
            ),
            vocab_size=2048,
            task="ppo",
            base="shakespeare-bpe-small",
            task_args={"beta": beta, "n_new": 24, "epochs": 2, "minibatches": 2, "n_prompts": 1024},
        )
        for beta in (0, 0.01, 0.02, 0.05)
    },
    # Chapter 16: GRPO (llmbook.rlhf.zoo_grpo) on the same task and budget of samples:
    # 30 steps of 16 prompts x G = 4 responses, the k3 KL term at beta = 0.2, no value model.
    "comedy-grpo-beta-0.2": Recipe(
        name="comedy-grpo-beta-0.2",
        description="GRPO of shakespeare-bpe-small toward comic lines, G = 4, beta = 0.2",
        model=CPU_MODEL,
        train=dict(max_steps=30, batch_size=16, lr=3e-4, warmup_steps=0, seed=0, precision="fp32"),
        vocab_size=2048,
        task="grpo",
        base="shakespeare-bpe-small",
        task_args={
            "beta": 0.2,
            "group_size": 4,
            "n_new": 24,
            "epochs": 2,
            "minibatches": 2,
            "n_prompts": 1024,
        },
    ),
}

# ---------------------------------------------------------------- the scaling grid
#: The model shapes of Chapter 10's scaling study, ``(n_layer, d_model, n_head)``, from
#: 8,240 to 256,560 parameters (:func:`llmbook.counting.count_parameters`, embeddings
#: included), 1.2 to 2.2 times apart.
SCALING_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 16, 2), (1, 24, 2), (1, 32, 4), (2, 32, 4), (2, 48, 4), (2, 64, 4), (3, 72, 4),
    (3, 80, 4),
)  # fmt: skip
#: The grid's compute budgets :math:`C = 6ND` (FLOPs, :math:`N` all parameters) and the
#: five or six consecutive shapes trained at each, every run on :math:`D \approx C / (6N)`
#: tokens: an isoFLOP design. Byte-level tokens (V = 256): the 4.3M training bytes allow
#: 3.0 times more tokens than BPE's 1.43M, and the models are not mostly embedding
#: (with V = 2048, a 2,048 x 24 embedding outweighs a whole block). Every run takes
#: :data:`SCALING_STEPS` steps with a batch of :math:`D / (S T)` windows, so that no run
#: is short of updates (with a fixed batch, the large models of a budget got under 100
#: steps and lost to the smallest at every budget). Every run stays under one epoch.
SCALING_BUDGETS: dict[float, tuple[int, ...]] = {
    4e10: (0, 1, 2, 3, 4),
    1.2e11: (1, 2, 3, 4, 5, 6),
    3.6e11: (2, 3, 4, 5, 6, 7),
}
#: Optimizer steps of every run of the scaling grid.
SCALING_STEPS = 500
#: Every point of the grid is trained with these seeds (initialisation and batch order);
#: Chapter 10 averages their losses. One seed is not enough: with batches of a few
#: windows, two seeds of one point differ by up to 0.035 nats per byte, as much as
#: neighbouring sizes of a budget, and a single seed's isoFLOP minima move by a factor
#: of two between CPUs.
SCALING_SEEDS: tuple[int, ...] = (0, 1)


def _scaling_recipe(shape: tuple[int, int, int], compute: float, seed: int = 0) -> Recipe:
    """One run of the scaling grid: a shape trained on :math:`C / (6N)` tokens (Chapter 10).

    Raw UTF-8 bytes of the training plays, windows of 64, :data:`SCALING_STEPS` steps of
    :math:`D / (64 S)` windows (rounded), float32, a cosine schedule to 10% of the peak
    matched to the run's length (as Chinchilla does), 10% warmup, and evaluation only at
    the start and the end. Seed 0 has the plain name, seed ``s`` the suffix ``-seed{s}``.
    """
    n_layer, d_model, n_head = shape
    model = dict(block_size=64, n_layer=n_layer, n_head=n_head, d_model=d_model,
                 bias=False, dropout=0.0, attn_implementation="explicit")  # fmt: skip
    n = count_parameters(GPTConfig(vocab_size=256, **model))
    batch = max(1, round(compute / (6 * n * SCALING_STEPS * 64)))
    tokens = SCALING_STEPS * batch * 64
    suffix = f"-seed{seed}" if seed else ""
    return Recipe(
        name=f"scaling-{n_layer}x{d_model}-{tokens // 1000}k{suffix}",
        description=(
            f"scaling grid: {n_layer}-layer, {d_model}-wide byte-level GPT, {n:,} "
            f"parameters, {tokens:,} tokens (C = {compute:.3g} FLOPs), seed {seed}"
        ),
        model=model,
        train=dict(max_steps=SCALING_STEPS, batch_size=batch, lr=3e-3, min_lr=3e-4,
                   warmup_steps=SCALING_STEPS // 10, weight_decay=0.1, grad_clip=1.0,
                   eval_interval=SCALING_STEPS, eval_batches=4, seed=seed,
                   precision="fp32"),
        tokenizer="bytes",
        vocab_size=None,
    )  # fmt: skip


#: Named groups of recipes that ``python -m llmbook.zoo build GROUP`` builds together;
#: ``scaling-grid`` is Chapter 10's study: 17 points, each with the seeds of
#: :data:`SCALING_SEEDS`, listed budget by budget, shape by shape, seed by seed.
#: ``derived`` is every recipe with a ``base`` (Chapters 15-17), after its base.
GROUPS: dict[str, tuple[str, ...]] = {
    "scaling-grid": (),
    "derived": tuple(n for n, r in RECIPES.items() if r.base is not None),
}
for _compute, _shapes in SCALING_BUDGETS.items():
    for _i in _shapes:
        for _seed in SCALING_SEEDS:
            _r = _scaling_recipe(SCALING_SHAPES[_i], _compute, _seed)
            RECIPES[_r.name] = _r
            GROUPS["scaling-grid"] += (_r.name,)
del _compute, _shapes, _i, _seed, _r


def get_recipe(name_or_recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` by name from :data:`RECIPES`, or the recipe itself (Chapter 7)."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    if isinstance(name_or_recipe, str) and name_or_recipe in RECIPES:
        return RECIPES[name_or_recipe]
    raise ValueError(
        f"name_or_recipe must be a Recipe or one of the known names {sorted(RECIPES)}, "
        f"got {name_or_recipe!r}"
    )


# ----------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """The zoo's cache folder: ``$LLMBOOK_CACHE`` if set, else ``~/.cache/llmbook`` (Chapter 7).

    Nothing is created until :func:`load` or :func:`prepare_data` writes there.
    """
    env = os.environ.get("LLMBOOK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmbook"


def _key(payload: dict[str, Any]) -> str:
    canonical = json.dumps(
        {**payload, "llmbook": __version__}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def recipe_key(recipe: Recipe) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON of the recipe (without its
    description, :meth:`Recipe.identity`) and the llmbook version: the name of its cache
    entry, ``zoo/<name>-<key>`` (Chapter 7)."""
    return _key({"recipe": get_recipe(recipe).identity()})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _BadEntry(Exception):
    """A cache folder that must not be used; the message says why."""


def _check_folder(folder: Path, manifest_name: str, expected: dict[str, Any]) -> dict[str, Any]:
    """Read a folder's manifest and check its fields and file hashes, or raise _BadEntry."""
    try:
        manifest = json.loads((folder / manifest_name).read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _BadEntry(f"corrupt (unreadable {manifest_name}: {err})") from None
    for k, v in expected.items():
        if manifest.get(k) != v:
            raise _BadEntry(f"stale ({k} is {manifest.get(k)!r}, expected {v!r})")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise _BadEntry(f"corrupt ({name} is missing or its SHA-256 differs)")
    return manifest


def _publish(tmp: Path, folder: Path) -> None:
    """Move a finished temporary folder into place (replacing a bad one) in one rename."""
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); an entry is an ordinary folder
    if folder.exists():
        shutil.rmtree(folder)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process published the same entry meanwhile: keep theirs
        if not folder.is_dir():
            raise


# ------------------------------------------------------------------------------ data
def _text(split: str, max_chars: int | None) -> str:
    text = shakespeare(split)
    return text if max_chars is None else text[:max_chars]


def prepare_data(recipe: Recipe | str, cache_dir: str | Path) -> tuple[BPETokenizer, Path, Path]:
    """The tokenizer and the token files of a recipe, built once and cached (Chapter 7).

    Trains a :class:`~llmbook.tokenizer.BPETokenizer` on the training split (or uses raw
    bytes: a tokenizer with no merges), encodes the training and validation splits and
    writes them with :func:`llmbook.data.write_tokens` to ``cache_dir/data/<key>/``
    (``uint16``, or ``uint32`` past 65,536 ids). Reuses that folder when its manifest and
    hashes check out; a bad one is reported (warning) and rebuilt. Returns
    ``(tokenizer, train_tokens_path, val_tokens_path)``; open the files with
    ``open_tokens(path, token_dtype(tokenizer))``.
    """
    recipe = get_recipe(recipe)
    check_type("cache_dir", cache_dir, str | os.PathLike, "a folder (str or Path)")
    spec = recipe.data_spec()
    key = _key({"data": spec})
    folder = Path(cache_dir) / "data" / key
    expected = {"spec": spec, "key": key, "version": __version__}
    if folder.exists():
        try:
            _check_folder(folder, "data.json", expected)
            tokenizer = BPETokenizer.load(folder / "tokenizer.bpe")
            for name in ("train.bin", "val.bin"):  # e.g. a headerless file of an older llmbook
                try:
                    open_tokens(folder / name, token_dtype(tokenizer))
                except ValueError as bad:
                    raise _BadEntry(f"corrupt ({bad})") from None
            return tokenizer, folder / "train.bin", folder / "val.bin"
        except (_BadEntry, ValueError) as err:
            warnings.warn(f"data cache {folder} is {err}; rebuilding it", stacklevel=2)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        train_text = _text(recipe.train_split, recipe.max_train_chars)
        if recipe.tokenizer == "bpe":
            tokenizer = BPETokenizer.train(train_text, recipe.model_vocab_size)
        else:
            tokenizer = BPETokenizer()
        tokenizer.save(tmp / "tokenizer.bpe")
        dtype = token_dtype(tokenizer)
        for name, text in (
            ("train.bin", train_text),
            ("val.bin", _text(recipe.val_split, recipe.max_val_chars)),
        ):
            write_tokens(np.asarray(tokenizer.encode_ordinary(text)), tmp / name, dtype)
        names = ("tokenizer.bpe", "train.bin", "val.bin")
        manifest = {**expected, "files": {n: _sha256(tmp / n) for n in names}}
        (tmp / "data.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _publish(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer, folder / "train.bin", folder / "val.bin"


def token_dtype(tokenizer: BPETokenizer) -> str:
    """The dtype of ``tokenizer``'s token files (Chapter 7): ``"uint16"`` up to 65,536 ids."""
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    return "uint16" if tokenizer.vocab_size <= 2**16 else "uint32"


# ---------------------------------------------------------------------- scoring text
@dataclass(frozen=True)
class TextScore:
    r"""The code length of a text under a model (Chapter 7), see :func:`evaluate_text`.

    Attributes:
        nats: total :math:`-\sum_t \ln p(x_t \mid \text{context})` over scored tokens.
        tokens: the number of tokens scored (all but the first).
        characters: the number of characters scored (see :func:`evaluate_text`).
        bytes: the number of UTF-8 bytes scored (the first token's excluded).
    """

    nats: float
    tokens: int
    characters: int
    bytes: int

    def __post_init__(self) -> None:
        check_number("nats", self.nats, low=0.0)
        for name in ("tokens", "characters", "bytes"):
            check_int(name, getattr(self, name), 1)

    @property
    def nats_per_token(self) -> float:
        """The mean loss per scored token, in nats."""
        return self.nats / self.tokens

    @property
    def bits_per_character(self) -> float:
        r"""Bits per character, :math:`\text{nats} / (\ln 2 \cdot \text{characters})`, comparable
        across tokenizers."""
        return float(bits_per_character(self.nats_per_token, self.tokens, self.characters))

    @property
    def bits_per_byte(self) -> float:
        r"""Bits per UTF-8 byte, :math:`\text{nats} / (\ln 2 \cdot \text{bytes})`."""
        return float(bits_per_byte(self.nats_per_token, self.tokens, self.bytes))


@torch.no_grad()
def evaluate_text(
    model: nn.Module,
    tokenizer: BPETokenizer,
    text: str,
    block_size: int | None = None,
    *,
    stride: int | None = None,
    batch_size: int = 16,
) -> TextScore:
    r"""Score every token of ``text`` exactly once under ``model`` (Chapter 7).

    With ids :math:`x_0, \dots, x_{n-1}` (``tokenizer.encode_ordinary``), windows of
    :math:`T` = ``block_size`` tokens (default: the model's context) start at
    :math:`0, S, 2S, \dots` for a stride :math:`S` = ``stride`` (default :math:`T`). The
    first window scores its :math:`T` targets :math:`x_1, \dots, x_T`; every later window
    scores only the targets no earlier window reached, its last :math:`S`, so each token
    :math:`x_t`, :math:`t \ge 1`, is scored once, and after the first window with at
    least :math:`T - S` tokens of context. :math:`S = T` gives non-overlapping windows
    (early tokens of each window see little context); a smaller :math:`S` costs
    :math:`T/S` times the forward passes and measures the model closer to its full
    context (the "sliding window" of Chapter 19). The first token has no context and is
    not scored, and neither are the characters it holds: a character counts as scored
    when its last byte is in a scored token. Then bits per character
    :math:`= \text{nats} / (\ln 2 \cdot \text{characters})`.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_type("tokenizer", tokenizer, BPETokenizer, "a BPETokenizer")
    ids = tokenizer.encode_ordinary(text)
    if len(ids) < 2:
        raise ValueError(f"text must encode to at least 2 tokens to score one, got {len(ids)}")
    context = getattr(getattr(model, "config", None), "block_size", None)
    T = context if block_size is None else block_size
    if not is_int(T) or T < 1 or (context and T > context):
        raise ValueError(f"block_size must be an integer in [1, {context}], got {block_size!r}")
    T = int(T)
    S = T if stride is None else stride
    if not is_int(S) or not 1 <= S <= T:
        raise ValueError(f"stride must be an integer in [1, block_size={T}], got {stride!r}")
    S, batch_size = int(S), check_int("batch_size", batch_size, 1)
    p = next(model.parameters())
    seq = torch.tensor(ids, dtype=torch.long, device=p.device)
    n = len(ids) - 1  # targets x_1 .. x_n
    # windows (start s, first scored position j): inputs x_s.. x_{s+T-1}, targets from s+1
    windows, done = [], 0  # done: the last target scored so far
    while done < n:
        s = len(windows) * S
        windows.append((s, done - s))  # position j predicts target s + j + 1
        done = min(s + T, n)
    full = [w for w in windows if w[0] + T <= n]
    pieces = []
    for i in range(0, len(full), batch_size):
        starts = torch.tensor([s for s, _ in full[i : i + batch_size]], device=p.device)
        idx = starts[:, None] + torch.arange(T, device=p.device)
        first = torch.tensor([j for _, j in full[i : i + batch_size]], device=p.device)
        pieces.append((seq[idx], seq[idx + 1], first))
    for s, j in windows[len(full) :]:  # at most one window runs past the end
        pieces.append((seq[s:n][None], seq[s + 1 :][None], torch.tensor([j], device=p.device)))
    nats = torch.zeros((), dtype=torch.float64, device=p.device)
    was_training = model.training
    model.eval()
    try:
        for x, y, first in pieces:
            logits = model(x)[0]
            losses = F.cross_entropy(logits.transpose(1, 2).double(), y, reduction="none")
            keep = torch.arange(x.shape[1], device=p.device)[None, :] >= first[:, None]
            nats += losses[keep].sum()
    finally:
        model.train(was_training)
    first_bytes = tokenizer.decode_bytes(ids[:1])
    n_bytes = len(text.encode("utf-8"))
    chars = len(text) - len(first_bytes.decode("utf-8", errors="ignore"))
    return TextScore(float(nats), n, chars, n_bytes - len(first_bytes))


# ------------------------------------------------------------------------------- load
@dataclass
class ZooModel:
    """A trained zoo model and what was measured when it was trained (Chapter 7).

    Attributes:
        model: the :class:`~llmbook.gpt.GPT`, in eval mode.
        tokenizer: its tokenizer.
        recipe: the recipe it was built from.
        history: the training :class:`~llmbook.train.History`.
        metrics: final ``val_loss`` (nats/token, random batches), exact ``val_bpc``,
            ``val_nats_per_token``, ``val_bits_per_byte`` and ``val_chars_per_token``
            (:func:`evaluate_text` over the validation text in float32, with stride
            :math:`T/2`: every token after the first window sees at least half the
            context), ``train_loss``,
            ``tokens_per_second``, ``seconds_per_step``, ``train_seconds``,
            ``n_parameters``, ``device`` and ``precision`` (the one training used, with
            ``"auto"`` resolved).
        path: the cache entry's folder.
        from_cache: True when loaded from the cache, False when trained by this call.
    """

    model: GPT
    tokenizer: BPETokenizer
    recipe: Recipe
    history: History
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()
    from_cache: bool = False

    def __post_init__(self) -> None:
        check_type("model", self.model, GPT, "an llmbook.gpt.GPT")
        check_type("tokenizer", self.tokenizer, BPETokenizer, "a BPETokenizer")
        check_type("recipe", self.recipe, Recipe, "a Recipe")
        check_type("history", self.history, History, "a History")
        check_type("metrics", self.metrics, dict, "a dict")
        check_bool("from_cache", self.from_cache)


def _fork_rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _build(
    recipe: Recipe, entry: Path, root: Path, device: torch.device, progress: bool
) -> ZooModel:
    if recipe.task in DERIVED_TASKS:
        return _build_derived(recipe, entry, device, progress)
    tokenizer, train_path, val_path = prepare_data(recipe, root)
    dtype = token_dtype(tokenizer)
    mcfg, tcfg = recipe.model_config(), recipe.train_config()
    with torch.random.fork_rng(devices=_fork_rng_devices(device)):
        torch.manual_seed(tcfg.seed)  # the initialisation is part of the recipe
        model = GPT(mcfg).to(device)
        fit = train_needle if recipe.task == "needle" else train
        args = (tokenizer,) if recipe.task == "needle" else ()
        history = fit(
            model,
            open_tokens(train_path, dtype),
            open_tokens(val_path, dtype),
            *args,
            tcfg,
            progress=progress,
        )
    model.eval()
    val_text, T = _text(recipe.val_split, recipe.max_val_chars), model.config.block_size
    if recipe.task == "needle":
        hay = val_text[: 200 * T]
        acc = needle_accuracy(model, tokenizer, hay, [T - 1], [0.0, 0.5, 1.0], trials=20)
        metrics = {
            "needle_accuracy": float(acc.mean()),
            "val_loss": history.val_losses[-1],
            "train_loss": history.train_losses[-1],
            "tokens_per_second": history.tokens_per_second,
            "seconds_per_step": history.seconds_per_step,
            "train_seconds": history.elapsed[-1],
            "n_parameters": model.num_parameters(),
            "device": str(device),
            "precision": history.precision,
        }
        return _save_entry(recipe, entry, model, tokenizer, history, metrics, tcfg)
    score = evaluate_text(model, tokenizer, val_text, stride=max(1, T // 2))
    metrics = {
        "val_loss": history.val_losses[-1],
        "val_bpc": score.bits_per_character,
        "val_nats_per_token": score.nats_per_token,
        "val_bits_per_byte": score.bits_per_byte,
        "train_loss": history.train_losses[-1],
        "tokens_per_second": history.tokens_per_second,
        "seconds_per_step": history.seconds_per_step,
        "train_seconds": history.elapsed[-1],
        "val_chars_per_token": score.characters / score.tokens,
        "n_parameters": model.num_parameters(),
        "device": str(device),
        "precision": history.precision,
    }
    return _save_entry(recipe, entry, model, tokenizer, history, metrics, tcfg)


def _derived_trainer(task: str) -> Any:
    module, _, function = DERIVED_TASKS[task].partition(":")
    return getattr(importlib.import_module(module), function)


def _build_derived(recipe: Recipe, entry: Path, device: torch.device, progress: bool) -> ZooModel:
    base = load(recipe.base, device=device, progress=progress)  # type: ignore[arg-type]
    if base.recipe.data_spec() != recipe.data_spec():
        raise ValueError(
            f"recipe {recipe.name!r} must use the data fields of its base {recipe.base!r}: "
            f"{base.recipe.data_spec()}"
        )
    tcfg = recipe.train_config()
    fit = _derived_trainer(recipe.task)
    with torch.random.fork_rng(devices=_fork_rng_devices(device)):
        torch.manual_seed(tcfg.seed)
        start = time.perf_counter()
        model, history, metrics = fit(recipe, base, device, progress)
        seconds = time.perf_counter() - start
    check_type("model", model, GPT, "an llmbook.gpt.GPT")
    if model.config != recipe.model_config():
        raise ValueError(
            f"the {recipe.task!r} trainer returned a model of {model.config}, "
            f"not the recipe's {recipe.model_config()}"
        )
    model.eval()
    metrics = {
        "train_seconds": seconds,  # the whole run, sampling and evaluation included
        **metrics,
        "n_parameters": model.num_parameters(),
        "device": str(device),
        "precision": history.precision,
    }
    return _save_entry(recipe, entry, model, base.tokenizer, history, metrics, tcfg)


def _save_entry(
    recipe: Recipe,
    entry: Path,
    model: GPT,
    tokenizer: BPETokenizer,
    history: History,
    metrics: dict[str, Any],
    tcfg: TrainConfig,
) -> ZooModel:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        save_checkpoint(tmp / "checkpoint.pt", model, None, tcfg.max_steps, history, tcfg, None)
        tokenizer.save(tmp / "tokenizer.bpe")
        manifest = {
            "recipe": recipe.identity(),
            "description": recipe.description,
            "key": recipe_key(recipe),
            "version": __version__,
            "metrics": metrics,
            "files": {n: _sha256(tmp / n) for n in ("checkpoint.pt", "tokenizer.bpe")},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ZooModel(model, tokenizer, recipe, history, metrics, entry, from_cache=False)


def _load_entry(recipe: Recipe, entry: Path, device: torch.device) -> ZooModel:
    expected = {"recipe": recipe.identity(), "key": recipe_key(recipe), "version": __version__}
    manifest = _check_folder(entry, "manifest.json", expected)
    try:
        tokenizer = BPETokenizer.load(entry / "tokenizer.bpe")
        model = GPT(recipe.model_config())
        ckpt = load_checkpoint(entry / "checkpoint.pt", model)
    except ValueError as err:
        raise _BadEntry(f"corrupt ({err})") from None
    model.to(device).eval()
    metrics = manifest.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(ckpt["history"], History):
        raise _BadEntry("corrupt (the manifest's metrics or the checkpoint's history are missing)")
    return ZooModel(model, tokenizer, recipe, ckpt["history"], metrics, entry, True)


def load(
    name_or_recipe: str | Recipe,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    retrain: bool = False,
) -> ZooModel:
    """A zoo model by name (or :class:`Recipe`): from the cache, or trained now (Chapter 7).

    The entry ``zoo/<name>-<key>`` under :func:`cache_dir` is used when its manifest's
    key, version and recipe match and the hashes of its files check out; otherwise (or
    with ``retrain=True``) the recipe is trained with :func:`llmbook.train.train` on
    ``device`` (default :func:`llmbook.get_device`) and the entry written atomically.
    A corrupt or stale entry is reported with a warning and rebuilt. Training runs under
    ``torch.random.fork_rng``, so the global random state is left as it was.
    """
    recipe = get_recipe(name_or_recipe)
    progress, retrain = check_bool("progress", progress), check_bool("retrain", retrain)
    try:
        device = get_device() if device is None else torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch.device, 'cpu' or 'cuda', got {device!r}"
        ) from None
    root = cache_dir()
    entry = root / "zoo" / f"{recipe.name}-{recipe_key(recipe)}"
    if entry.exists() and not retrain:
        try:
            return _load_entry(recipe, entry, device)
        except _BadEntry as err:
            warnings.warn(f"model zoo entry {entry} is {err}; retraining it", stacklevel=2)
    return _build(recipe, entry, root, device, progress)


# ----------------------------------------------------------------------- command line
def _entry_of(recipe: Recipe) -> Path:
    return cache_dir() / "zoo" / f"{recipe.name}-{recipe_key(recipe)}"


def _format_metrics(metrics: dict[str, Any]) -> str:
    def show(key: str, fmt: str, unit: str = "") -> str | None:
        value = metrics.get(key)
        return None if value is None else f"{key.replace('_', ' ')} {value:{fmt}}{unit}"

    parts = [
        show("needle_accuracy", ".3f"),
        show("val_bpc", ".4f", " bits/char"),
        show("val_loss", ".4f", " nats/token"),
        show("val_chars_per_token", ".3f"),
        show("train_seconds", ".1f", " s"),
        show("tokens_per_second", ",.0f"),
        show("n_parameters", ","),
        show("device", "s"),
        show("precision", "s"),
    ]
    return ", ".join(p for p in parts if p is not None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmbook.zoo",
        description="Train and cache the book's zoo models (llmbook.zoo, Chapter 7).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the recipes and whether each is cached")
    build = sub.add_parser("build", help="train the named recipes, or find them in the cache")
    build.add_argument(
        "names", nargs="+", metavar="NAME", help="recipe or group names (see `list`)"
    )
    build.add_argument("--device", default=None, help="cpu or cuda (default: llmbook.get_device)")
    build.add_argument("--retrain", action="store_true", help="train even if cached")
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The zoo's command line, ``python -m llmbook.zoo {list, build NAME ...}`` (Chapter 7).

    ``list`` prints each recipe of :data:`RECIPES`, whether it is cached under
    :func:`cache_dir`, and its description. ``build`` checks every name first (an unknown
    one: a message on stderr listing the known names and exit status 2, nothing trained),
    then calls :func:`load` on each and prints the cache folder and the metrics. Returns
    the exit status.
    """
    if argv is not None and (
        isinstance(argv, str)
        or not isinstance(argv, Sequence)
        or not all(isinstance(a, str) for a in argv)
    ):
        raise ValueError(f"argv must be a list of strings or None, got {argv!r:.60}")
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, recipe in sorted(RECIPES.items()):
            state = "cached" if _entry_of(recipe).is_dir() else "not built"
            print(f"{name:<24} {state:<10} {recipe.description}")
        for group, members in sorted(GROUPS.items()):
            print(f"{group:<24} {'group':<10} {len(members)} recipes: {', '.join(members)}")
        print(f"cache: {cache_dir()}")
        return 0
    try:
        device = get_device(args.device)
    except ValueError as err:
        print(f"error: --device: {err}", file=sys.stderr)
        return 2
    names = [m for n in args.names for m in GROUPS.get(n, (n,))]  # groups expanded
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        print(
            f"error: unknown zoo model(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(RECIPES))}; groups: {', '.join(sorted(GROUPS))}",
            file=sys.stderr,
        )
        return 2
    for name in dict.fromkeys(names):  # each once, in the order given
        if args.retrain or not _entry_of(RECIPES[name]).is_dir():
            print(f"{name}: training on {device} (cache: {cache_dir()})", flush=True)
        start = time.perf_counter()
        zm = load(name, device=device, progress=not args.no_progress, retrain=args.retrain)
        how = (
            "from the cache" if zm.from_cache else f"trained in {time.perf_counter() - start:.0f} s"
        )
        print(f"{name}: {how}; cached at {zm.path}")
        print(f"  {_format_metrics(zm.metrics)}")
    return 0


__all__ = [
    "CPU_MODEL",
    "DERIVED_TASKS",
    "GROUPS",
    "RECIPES",
    "SCALING_BUDGETS",
    "SCALING_SHAPES",
    "SCALING_STEPS",
    "TASKS",
    "TOKENIZERS",
    "Recipe",
    "TextScore",
    "ZooModel",
    "cache_dir",
    "evaluate_text",
    "get_recipe",
    "load",
    "main",
    "prepare_data",
    "recipe_key",
    "token_dtype",
]


if __name__ == "__main__":
    sys.exit(main())
