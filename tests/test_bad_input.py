"""Bad input, for the whole library: every public function and class of ``llmbook`` refuses
it with a ``ValueError`` that names the argument (CONVENTIONS §4), and accepts valid input
in another common form (NumPy scalars, int32 targets, uint8 ids).

``PROBES`` holds at least one bad-input call per public callable (a module's ``__all__``,
or its names without a leading underscore; methods of public classes included), keyed
``module.qualname``; each must raise ``ValueError`` whose message matches the probe's
pattern: the argument's name, or for a file argument the file's name.
``test_every_public_callable_has_a_probe`` enumerates the API, so a new function fails
until it has a probe. Run this file as a script for the tally: probes, clear, vague, silent.

The models, tokenizers and arrays are tiny (a 1-layer GPT of width 8, V = 11), so the
whole file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import math
import pkgutil
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

import llmbook
from llmbook import (
    _env,
    attention,
    corpus,
    counting,
    data,
    embeddings,
    functional,
    gpt,
    information,
    ngram,
    plotting,
    positional,
    pretrained,
    tokenizer,
    train,
    zoo,
)

# ------------------------------------------------------------------------------ objects


@cache
def cfg() -> gpt.GPTConfig:
    return gpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8)


def model() -> gpt.GPT:
    torch.manual_seed(0)
    return gpt.GPT(cfg())


@cache
def tcfg() -> train.TrainConfig:
    return train.TrainConfig(max_steps=2, batch_size=2, block_size=4, warmup_steps=0)


def xy() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(8).reshape(2, 4) % 11
    return x, (x + 1) % 11


@cache
def lm() -> ngram.NGramModel:
    return ngram.NGramModel(2).fit("abcabd")


@cache
def vectors() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 3)), ["a", "b", "c", "d", "e"]


@cache
def tok() -> tokenizer.BPETokenizer:
    return tokenizer.BPETokenizer([(97, 98)], special_tokens=["<|e|>"])


def ranked() -> pretrained.RankedBPETokenizer:
    return pretrained.RankedBPETokenizer({bytes([b]): b for b in range(256)})


def tiny_recipe() -> zoo.Recipe:
    return zoo.Recipe(
        name="bad-input",
        description="",
        model=dict(block_size=8, n_layer=1, n_head=2, d_model=8),
        train=dict(max_steps=1, batch_size=2, warmup_steps=0),
        tokenizer="bytes",
        vocab_size=None,
    )


def qkv(dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return tuple(torch.randn(1, 2, 3, 4, dtype=dtype) for _ in range(3))  # type: ignore[return-value]


def kv_cache_with_float32() -> attention.KVCache:
    cache_ = attention.KVCache(8)
    k, v, _ = qkv()
    cache_.update(k, v)
    return cache_


def file(t: Path, name: str, content: bytes) -> Path:
    path = t / name
    path.write_bytes(content)
    return path


def checkpoint_without(t: Path, key: str) -> Path:
    m = model()
    path = train.save_checkpoint(t / "full.pt", m, None, 0, train.History(), tcfg(), None)
    ckpt = torch.load(path, weights_only=True)
    del ckpt[key]
    torch.save(ckpt, t / "incomplete.pt")
    return t / "incomplete.pt"


#: A split pattern with catastrophic backtracking: on "aaaa…b" it takes time exponential in
#: the number of a's (20 of them: about a second; 40: days).
EVIL_PATTERN = r"(a|a)+$|\s|[\s\S]"


def crafted_tokenizer_file(t: Path) -> Path:
    text = f"llmbook-bpe 1\npattern {json.dumps(EVIL_PATTERN)}\nspecial 0\nmerges 0\n"
    return file(t, "crafted.bpe", text.encode("utf-8"))


def own_step(batches: object) -> object:
    """train_step of a fresh model, with its own optimizer, on ``batches``."""
    m = model()
    return train.train_step(m, train.configure_optimizer(m, tcfg()), batches, lr=1e-3)


def one_step(opt_model: torch.nn.Module) -> Callable[[], object]:
    """train_step of a fresh model with an optimizer built for ``opt_model``."""
    m = model()
    opt = train.configure_optimizer(opt_model, tcfg())
    return lambda: train.train_step(m, opt, [xy()], lr=1e-3)


# ------------------------------------------------------------------------------- probes
class Probe(NamedTuple):
    key: str  # module.qualname of the public callable
    match: str  # regex the ValueError's message must match: the argument (or file) name
    call: Callable[[Path], object]  # takes a temporary folder


P = Probe
T32 = torch.float32
PROBES: list[Probe] = [
    # _env
    P("llmbook._env.get_device", "prefer", lambda t: _env.get_device("gpu")),
    P("llmbook._env.seed_everything", "seed", lambda t: _env.seed_everything(-1)),
    P("llmbook._env.setup_notebook", "seed", lambda t: _env.setup_notebook("0")),
    # attention
    P("llmbook.attention.KVCache", "max_len", lambda t: attention.KVCache(0)),
    P(
        "llmbook.attention.KVCache.update",
        "k and v",
        lambda t: kv_cache_with_float32().update(*qkv(torch.float64)[:2]),
    ),
    P(
        "llmbook.attention.MultiHeadAttention",
        "n_head",
        lambda t: attention.MultiHeadAttention(8, 0),
    ),
    P(
        "llmbook.attention.MultiHeadAttention.forward",
        "x must",
        lambda t: attention.MultiHeadAttention(8, 2)(torch.randn(1, 3, 8, dtype=torch.float64)),
    ),
    P(
        "llmbook.attention.MultiHeadAttention.forward",
        "x must",
        lambda t: attention.MultiHeadAttention(8, 2)(torch.randn(1, 3, 8).half()),
    ),
    P("llmbook.attention.causal_mask", "T_q", lambda t: attention.causal_mask(0)),
    P(
        "llmbook.attention.combine_masks",
        r"masks\[0\]",
        lambda t: attention.combine_masks(torch.ones(2, 2)),
    ),
    P("llmbook.attention.padding_mask", "lengths", lambda t: attention.padding_mask([1, 5], 3)),
    P("llmbook.attention.repeat_kv", "n_rep", lambda t: attention.repeat_kv(qkv()[1], 0)),
    P(
        "llmbook.attention.scaled_dot_product_attention",
        "mask",
        lambda t: attention.scaled_dot_product_attention(*qkv(), torch.full((3, 3), math.nan)),
    ),
    P(
        "llmbook.attention.scaled_dot_product_attention",
        "mask",
        lambda t: attention.scaled_dot_product_attention(*qkv(), torch.full((3, 3), math.inf)),
    ),
    P(
        "llmbook.attention.scaled_dot_product_attention",
        "scale",
        lambda t: attention.scaled_dot_product_attention(*qkv(), scale=math.inf),
    ),
    P(
        "llmbook.attention.sliding_window_mask",
        "window",
        lambda t: attention.sliding_window_mask(4, window=0),
    ),
    # corpus
    P(
        "llmbook.corpus.longest_shared_substring",
        "sample",
        lambda t: corpus.longest_shared_substring(1, "a"),
    ),
    P("llmbook.corpus.markdown_to_text", "markdown", lambda t: corpus.markdown_to_text(b"x")),
    P("llmbook.corpus.play_text", "name", lambda t: corpus.play_text(["hamlet"])),
    P("llmbook.corpus.pydoc_prose_and_code", "topics", lambda t: corpus.pydoc_prose_and_code("if")),
    P("llmbook.corpus.shakespeare", "split", lambda t: corpus.shakespeare("dev")),
    P(
        "llmbook.corpus.shakespeare",
        "stage_directions",
        lambda t: corpus.shakespeare(stage_directions="no"),
    ),
    P("llmbook.corpus.split_plays", "split", lambda t: corpus.split_plays("dev")),
    # counting
    P(
        "llmbook.counting.activation_bytes",
        "batch",
        lambda t: counting.activation_bytes(cfg(), 0, 8),
    ),
    P("llmbook.counting.count_parameters", "cfg", lambda t: counting.count_parameters("cfg")),
    P("llmbook.counting.flops_per_token", "seq_len", lambda t: counting.flops_per_token(cfg(), 0)),
    P(
        "llmbook.counting.kv_cache_bytes",
        "bytes_per_value",
        lambda t: counting.kv_cache_bytes(cfg(), 1, 8, 0),
    ),
    P(
        "llmbook.counting.memory_bytes",
        "optimizer",
        lambda t: counting.memory_bytes(cfg(), optimizer="adamw"),
    ),
    P(
        "llmbook.counting.memory_bytes",
        "kv_cache_bytes_per_value",
        lambda t: counting.memory_bytes(cfg(), training=False, kv_cache_bytes_per_value=0),
    ),
    # data
    P("llmbook.data.MinHasher", "num_perm", lambda t: data.MinHasher(num_perm=0)),
    P(
        "llmbook.data.MinHasher.hash_values",
        "x must",
        lambda t: data.MinHasher(4).hash_values(np.array([-1])),
    ),
    P(
        "llmbook.data.MinHasher.hash_values",
        "x must",
        lambda t: data.MinHasher(4).hash_values(np.array([1.5])),
    ),
    P(
        "llmbook.data.MinHasher.signature",
        "shingle_set",
        lambda t: data.MinHasher(4).signature(set()),
    ),
    P(
        "llmbook.data.MinHasher.signatures",
        "shingle_sets",
        lambda t: data.MinHasher(4).signatures([]),
    ),
    P("llmbook.data.NearDuplicate", "i must", lambda t: data.NearDuplicate(1, 0, 0.5, 0.5)),
    P("llmbook.data.NearDuplicate", "true_jaccard", lambda t: data.NearDuplicate(0, 1, 0.5, 2.0)),
    P("llmbook.data.decontaminate", "eval_docs", lambda t: data.decontaminate(["a"], [])),
    P("llmbook.data.documents", "unit", lambda t: data.documents("train", "line")),
    P(
        "llmbook.data.estimate_jaccard",
        "sig_a",
        lambda t: data.estimate_jaccard(np.zeros(3), np.zeros(4)),
    ),
    P("llmbook.data.exact_dedup", "docs", lambda t: data.exact_dedup("abc")),
    P("llmbook.data.get_batch", "data", lambda t: data.get_batch(np.arange(10.0), 2, 2)),
    P(
        "llmbook.data.get_batch",
        "generator",
        lambda t: data.get_batch(np.arange(10), 2, 2, generator=np.random.default_rng(0)),
    ),
    P("llmbook.data.jaccard", "a and b", lambda t: data.jaccard({1}, [1])),
    P(
        "llmbook.data.lsh_candidate_pairs",
        "signatures",
        lambda t: data.lsh_candidate_pairs(np.zeros((2, 5)), 2, 2),
    ),
    P(
        "llmbook.data.lsh_candidate_probability",
        "s must",
        lambda t: data.lsh_candidate_probability(1.5, 2, 2),
    ),
    P("llmbook.data.lsh_threshold", "bands", lambda t: data.lsh_threshold(0, 2)),
    P("llmbook.data.near_duplicates", "threshold", lambda t: data.near_duplicates(["a b"], 0.0)),
    P("llmbook.data.normalize", "text", lambda t: data.normalize(5)),
    P(
        "llmbook.data.open_tokens",
        "dtype='uint16'",
        lambda t: data.open_tokens(data.write_tokens([70000], t / "u32.bin", "uint32"), "uint16"),
    ),
    P(
        "llmbook.data.open_tokens",
        "headerless.bin",
        lambda t: data.open_tokens(file(t, "headerless.bin", np.arange(4, dtype="<u2").tobytes())),
    ),
    P(
        "llmbook.data.quality_filter",
        "max_bits_per_char",
        lambda t: data.quality_filter(["ab"], lm(), 0),
    ),
    P("llmbook.data.quality_scores", "model", lambda t: data.quality_scores(["ab"], "model")),
    P("llmbook.data.shingles", "k must", lambda t: data.shingles("a b", 0)),
    P("llmbook.data.write_tokens", "ids", lambda t: data.write_tokens([1.5], t / "f.bin")),
    # embeddings
    P(
        "llmbook.embeddings.analogy",
        "k must",
        lambda t: embeddings.analogy(*vectors(), "a", "b", "c", k=0),
    ),
    P(
        "llmbook.embeddings.analogy_rank",
        "target",
        lambda t: embeddings.analogy_rank(*vectors(), "a", "b", "c", "zz"),
    ),
    P(
        "llmbook.embeddings.analogy_scores",
        r"\ba=",
        lambda t: embeddings.analogy_scores(*vectors(), "zz", "b", "c"),
    ),
    P("llmbook.embeddings.build_vocab", "tokens", lambda t: embeddings.build_vocab("hello")),
    P(
        "llmbook.embeddings.cooccurrence_matrix",
        "ids",
        lambda t: embeddings.cooccurrence_matrix(np.array([0.5]), 3, 1),
    ),
    P(
        "llmbook.embeddings.nearest_neighbours",
        "k must",
        lambda t: embeddings.nearest_neighbours(*vectors(), "a", k=-1),
    ),
    P("llmbook.embeddings.ppmi", "alpha", lambda t: embeddings.ppmi(np.ones((2, 2)), alpha=0)),
    P(
        "llmbook.embeddings.svd_embeddings",
        "dim",
        lambda t: embeddings.svd_embeddings(np.ones((2, 2)), 0),
    ),
    P("llmbook.embeddings.words", "text", lambda t: embeddings.words(5)),
    # functional
    P(
        "llmbook.functional.gelu",
        "approximate",
        lambda t: functional.gelu(torch.ones(2), approximate="fast"),
    ),
    P(
        "llmbook.functional.gelu_grad",
        "x must",
        lambda t: functional.gelu_grad(torch.ones(2, dtype=int)),
    ),
    P(
        "llmbook.functional.log_softmax",
        "dim",
        lambda t: functional.log_softmax(torch.ones(2), 1.5),
    ),
    P("llmbook.functional.logsumexp", "x must", lambda t: functional.logsumexp([1.0])),
    P("llmbook.functional.relu", "x must", lambda t: functional.relu(np.ones(2))),
    P("llmbook.functional.silu", "x must", lambda t: functional.silu(torch.ones(2, dtype=int))),
    P(
        "llmbook.functional.softmax",
        "x must",
        lambda t: functional.softmax(torch.tensor([math.nan])),
    ),
    P(
        "llmbook.functional.swiglu",
        "gate and up",
        lambda t: functional.swiglu(torch.ones(2), torch.ones(3)),
    ),
    # gpt
    P("llmbook.gpt.GPT", "cfg", lambda t: gpt.GPT("cfg")),
    P(
        "llmbook.gpt.GPT.num_parameters",
        "non_embedding",
        lambda t: model().num_parameters(non_embedding="yes"),
    ),
    P("llmbook.gpt.GPT.forward", "idx", lambda t: model()(torch.ones(1, 3))),
    P("llmbook.gpt.GPT.forward", "idx", lambda t: model()(torch.ones(1, 3, dtype=torch.bool))),
    P("llmbook.gpt.GPT.forward", "targets", lambda t: model()(xy()[0], torch.full((2, 4), -100))),
    P("llmbook.gpt.GPT.forward", "targets", lambda t: model()(xy()[0], xy()[1].float())),
    P(
        "llmbook.gpt.GPT.generate",
        "temperature",
        lambda t: model().generate(xy()[0], 2, temperature=1e-40),
    ),
    P("llmbook.gpt.GPT.generate", "max_new_tokens", lambda t: model().generate(xy()[0], -1)),
    P("llmbook.gpt.GPT.from_hf_gpt2", "hf_model", lambda t: gpt.GPT.from_hf_gpt2(object())),
    P(
        "llmbook.gpt.GPT.from_hf_gpt2_state_dict",
        "state_dict",
        lambda t: gpt.GPT.from_hf_gpt2_state_dict({"wte.weight": torch.ones(3, 4)}),
    ),
    P("llmbook.gpt.GPT.from_hf_llama", "hf_model", lambda t: gpt.GPT.from_hf_llama(object())),
    P("llmbook.gpt.Block", "cfg", lambda t: gpt.Block(5)),
    P("llmbook.gpt.Block.forward", "x must", lambda t: gpt.Block(cfg())(torch.ones(1, 3, 5))),
    P("llmbook.gpt.CausalSelfAttention", "cfg", lambda t: gpt.CausalSelfAttention({})),
    P(
        "llmbook.gpt.CausalSelfAttention.forward",
        "x must",
        lambda t: gpt.CausalSelfAttention(cfg())(torch.ones(1, 3, 8, dtype=torch.float64)),
    ),
    P("llmbook.gpt.FeedForward", "cfg", lambda t: gpt.FeedForward(None)),
    P(
        "llmbook.gpt.FeedForward.forward",
        "x must",
        lambda t: gpt.FeedForward(cfg())(torch.ones(1, 3, 5)),
    ),
    P("llmbook.gpt.GPTConfig", "norm_eps", lambda t: gpt.GPTConfig(norm_eps=math.inf)),
    P("llmbook.gpt.GPTConfig", "vocab_size", lambda t: gpt.GPTConfig(vocab_size=11.0)),
    P("llmbook.gpt.GPTConfig", "dropout", lambda t: gpt.GPTConfig(dropout=math.nan)),
    P("llmbook.gpt.RMSNorm", "eps", lambda t: gpt.RMSNorm(8, 0.0)),
    P("llmbook.gpt.RMSNorm.forward", "x must", lambda t: gpt.RMSNorm(8, 1e-5)(torch.ones(2, 5))),
    # information
    P(
        "llmbook.information.bits_per_byte",
        "n_bytes",
        lambda t: information.bits_per_byte(1.0, 5, 0),
    ),
    P(
        "llmbook.information.bits_per_character",
        "n_chars",
        lambda t: information.bits_per_character(1.0, 5, 0),
    ),
    P("llmbook.information.bits_to_nats", "x must", lambda t: information.bits_to_nats("a")),
    P(
        "llmbook.information.cross_entropy",
        "p and q",
        lambda t: information.cross_entropy([0.5, 0.5], [1.0]),
    ),
    P("llmbook.information.entropy", "base", lambda t: information.entropy([0.5, 0.5], base=1)),
    P(
        "llmbook.information.kl_divergence",
        "axis",
        lambda t: information.kl_divergence([0.5, 0.5], [0.5, 0.5], axis=5),
    ),
    P(
        "llmbook.information.mutual_information",
        "joint",
        lambda t: information.mutual_information(np.ones(3) / 3),
    ),
    P("llmbook.information.nats_to_bits", "x must", lambda t: information.nats_to_bits(math.nan)),
    P(
        "llmbook.information.negative_log_likelihood",
        "target_probs",
        lambda t: information.negative_log_likelihood([1.5]),
    ),
    P("llmbook.information.per_unit", "n_tokens", lambda t: information.per_unit(1.0, 0, 1)),
    P("llmbook.information.perplexity", "loss", lambda t: information.perplexity(-1.0)),
    P(
        "llmbook.information.perplexity",
        "loss",
        lambda t: information.perplexity(torch.tensor([1.0, math.nan])),
    ),
    # ngram
    P("llmbook.ngram.NGramModel", "n must", lambda t: ngram.NGramModel(0)),
    P("llmbook.ngram.NGramModel.encode", "tokens", lambda t: lm().encode(5)),
    P("llmbook.ngram.NGramModel.decode", "ids", lambda t: lm().decode([-1])),
    P("llmbook.ngram.NGramModel.decode", "ids", lambda t: lm().decode([1.5])),
    P("llmbook.ngram.NGramModel.fit", "tokens", lambda t: ngram.NGramModel(2).fit(5)),
    P(
        "llmbook.ngram.NGramModel.prob",
        "contexts",
        lambda t: lm().prob(np.array([[0.7]]), np.array([0])),
    ),
    P("llmbook.ngram.NGramModel.prob", "contexts", lambda t: lm().prob(np.zeros((1, 3), int), [0])),
    P(
        "llmbook.ngram.NGramModel.next_distribution",
        "context",
        lambda t: lm().next_distribution("zz"),
    ),
    P("llmbook.ngram.NGramModel.logprobs", "tokens", lambda t: lm().logprobs("")),
    P("llmbook.ngram.NGramModel.logprob", "tokens", lambda t: lm().logprob(5)),
    P("llmbook.ngram.NGramModel.cross_entropy", "base", lambda t: lm().cross_entropy("ab", base=1)),
    P("llmbook.ngram.NGramModel.perplexity", "tokens", lambda t: lm().perplexity("xyz")),
    P(
        "llmbook.ngram.NGramModel.sample",
        "length",
        lambda t: lm().sample(-1, np.random.default_rng(0)),
    ),
    P(
        "llmbook.ngram.NGramModel.sample",
        "prompt",
        lambda t: lm().sample(2, np.random.default_rng(0), prompt="zz"),
    ),
    # plotting
    P("llmbook.plotting.plot_alibi", "bias", lambda t: plotting.plot_alibi(np.ones(3), np.ones(2))),
    P(
        "llmbook.plotting.plot_functions_and_derivatives",
        "values",
        lambda t: plotting.plot_functions_and_derivatives(
            np.ones(3), {"a": np.ones(4)}, {"a": np.ones(3)}
        ),
    ),
    P(
        "llmbook.plotting.plot_position_encoding",
        "pe",
        lambda t: plotting.plot_position_encoding(np.ones(3)),
    ),
    P(
        "llmbook.plotting.plot_rope_wavelengths",
        "freqs",
        lambda t: plotting.plot_rope_wavelengths({}),
    ),
    P(
        "llmbook.plotting.plot_score_by_distance",
        "scores",
        lambda t: plotting.plot_score_by_distance({}),
    ),
    P(
        "llmbook.plotting.plot_train_valid",
        "curves",
        lambda t: plotting.plot_train_valid(np.ones(3), {}, xlabel="x", ylabel="y"),
    ),
    P(
        "llmbook.plotting.plot_training_curve",
        "window",
        lambda t: plotting.plot_training_curve(np.ones(10), window=0),
    ),
    P(
        "llmbook.plotting.plot_vocab_length",
        "sizes",
        lambda t: plotting.plot_vocab_length([1, 2], [1.0]),
    ),
    P(
        "llmbook.plotting.plot_attention_grid",
        "weights",
        lambda t: plotting.plot_attention_grid(np.ones((2, 3))),
    ),
    P(
        "llmbook.plotting.plot_attention_weights",
        "weights",
        lambda t: plotting.plot_attention_weights(np.ones((2, 2), dtype=int)),
    ),
    P("llmbook.plotting.plot_masks", "masks", lambda t: plotting.plot_masks({})),
    # positional
    P(
        "llmbook.positional.LearnedPositionalEmbedding",
        "max_len",
        lambda t: positional.LearnedPositionalEmbedding(0, 4),
    ),
    P(
        "llmbook.positional.LearnedPositionalEmbedding.forward",
        "offset",
        lambda t: positional.LearnedPositionalEmbedding(4, 4)(torch.ones(2, 4), offset=-1),
    ),
    P(
        "llmbook.positional.LearnedPositionalEmbedding.forward",
        "x must",
        lambda t: positional.LearnedPositionalEmbedding(4, 4)([[1.0] * 4]),
    ),
    P(
        "llmbook.positional.alibi_bias",
        "causal",
        lambda t: positional.alibi_bias(2, 4, causal="yes"),
    ),
    P("llmbook.positional.alibi_slopes", "n_head", lambda t: positional.alibi_slopes(0)),
    P(
        "llmbook.positional.apply_rope",
        "layout",
        lambda t: positional.apply_rope(torch.ones(2, 4), layout="x"),
    ),
    P(
        "llmbook.positional.rope_frequencies",
        "original_length",
        lambda t: positional.rope_frequencies(8, scaling="yarn", scale=2.0),
    ),
    P(
        "llmbook.positional.rope_rotation_matrix",
        "position",
        lambda t: positional.rope_rotation_matrix(math.nan, 4),
    ),
    P(
        "llmbook.positional.sinusoidal_encoding",
        "dtype",
        lambda t: positional.sinusoidal_encoding(4, 8, dtype=torch.int64),
    ),
    P(
        "llmbook.positional.sinusoidal_shift_matrix",
        "k must",
        lambda t: positional.sinusoidal_shift_matrix(math.inf, 8),
    ),
    P(
        "llmbook.positional.yarn_attention_factor",
        "scale",
        lambda t: positional.yarn_attention_factor(0.5),
    ),
    # pretrained
    P(
        "llmbook.pretrained.RankedBPETokenizer",
        "ranks",
        lambda t: pretrained.RankedBPETokenizer("ranks"),
    ),
    P(
        "llmbook.pretrained.RankedBPETokenizer.decode_bytes",
        "ids",
        lambda t: ranked().decode_bytes([-1]),
    ),
    P(
        "llmbook.pretrained.RankedBPETokenizer.to_tiktoken",
        "name",
        lambda t: ranked().to_tiktoken(5),
    ),
    P(
        "llmbook.pretrained.load_gpt2_files",
        "missing.json",
        lambda t: pretrained.load_gpt2_files(t / "missing.json", t / "missing.bpe"),
    ),
    P(
        "llmbook.pretrained.load_tiktoken_file",
        "missing.tiktoken",
        lambda t: pretrained.load_tiktoken_file(t / "missing.tiktoken"),
    ),
    P(
        "llmbook.pretrained.packaged_file",
        "package",
        lambda t: pretrained.packaged_file("no_such_package_xyz", "a.txt"),
    ),
    P(
        "llmbook.pretrained.read_gpt2_files",
        "missing.json",
        lambda t: pretrained.read_gpt2_files(t / "missing.json", t / "missing.bpe"),
    ),
    P(
        "llmbook.pretrained.read_tiktoken_file",
        "bad.tiktoken",
        lambda t: pretrained.read_tiktoken_file(file(t, "bad.tiktoken", b"@@@ x\n")),
    ),
    # tokenizer
    P("llmbook.tokenizer.BPETokenizer", "merges", lambda t: tokenizer.BPETokenizer([(1,)])),
    P(
        "llmbook.tokenizer.BPETokenizer.train",
        "vocab_size",
        lambda t: tokenizer.BPETokenizer.train("abc", 10),
    ),
    P("llmbook.tokenizer.BPETokenizer.token_bytes", "token_id", lambda t: tok().token_bytes(-1)),
    P("llmbook.tokenizer.BPETokenizer.encode_ordinary", "text", lambda t: tok().encode_ordinary(5)),
    P(
        "llmbook.tokenizer.BPETokenizer.encode",
        "allowed_special",
        lambda t: tok().encode("a", allowed_special="x"),
    ),
    P("llmbook.tokenizer.BPETokenizer.encode_iter", "lines", lambda t: tok().encode_iter("abc")),
    P("llmbook.tokenizer.BPETokenizer.decode_bytes", "ids", lambda t: tok().decode_bytes([1.5])),
    P("llmbook.tokenizer.BPETokenizer.decode", "errors", lambda t: tok().decode([1], "bogus")),
    P("llmbook.tokenizer.BPETokenizer.save", "path", lambda t: tok().save(t)),  # a folder
    P(
        "llmbook.tokenizer.BPETokenizer.load",
        "crafted.bpe",
        lambda t: tokenizer.BPETokenizer.load(crafted_tokenizer_file(t)),
    ),
    P(
        "llmbook.tokenizer.BPETokenizer.load",
        "latin1.bpe",
        lambda t: tokenizer.BPETokenizer.load(file(t, "latin1.bpe", b"llmbook-bpe 1\n\xff\n")),
    ),
    P(
        "llmbook.tokenizer.BPETokenizer.load",
        "missing.bpe",
        lambda t: tokenizer.BPETokenizer.load(t / "missing.bpe"),
    ),
    P(
        "llmbook.tokenizer.BPETokenizer.from_gpt2_files",
        "missing.json",
        lambda t: tokenizer.BPETokenizer.from_gpt2_files(t / "missing.json", t / "missing.bpe"),
    ),
    P(
        "llmbook.tokenizer.BPETokenizer.from_tiktoken_file",
        "missing.tiktoken",
        lambda t: tokenizer.BPETokenizer.from_tiktoken_file(t / "missing.tiktoken"),
    ),
    P("llmbook.tokenizer.BPETokenizer.to_tiktoken", "name", lambda t: tok().to_tiktoken(5)),
    P("llmbook.tokenizer.chunk_counts", "text", lambda t: tokenizer.chunk_counts(5)),
    P(
        "llmbook.tokenizer.learn_merges",
        "n_merges",
        lambda t: tokenizer.learn_merges({b"ab": 1}, -1),
    ),
    P(
        "llmbook.tokenizer.learn_merges_naive",
        "counts",
        lambda t: tokenizer.learn_merges_naive({"ab": 1}, 1),
    ),
    P("llmbook.tokenizer.merge_pair", "pair", lambda t: tokenizer.merge_pair([1, 2], (1,), 5)),
    P("llmbook.tokenizer.pair_counts", "counts", lambda t: tokenizer.pair_counts({"ab": 1})),
    P("llmbook.tokenizer.split_text", "pattern", lambda t: tokenizer.split_text("a", "")),
    # train
    P("llmbook.train.History", "precision", lambda t: train.History(precision="fp16")),
    P(
        "llmbook.train.History.from_dict",
        r"\bd must",
        lambda t: train.History.from_dict({"steps": []}),
    ),
    P("llmbook.train.TrainConfig", "lr", lambda t: train.TrainConfig(lr=math.nan)),
    P(
        "llmbook.train.accumulate_gradients",
        "batches",
        lambda t: train.accumulate_gradients(model(), xy()),
    ),
    P("llmbook.train.autocast", "precision", lambda t: train.autocast("fp16", "cpu")),
    P(
        "llmbook.train.configure_optimizer",
        "cfg",
        lambda t: train.configure_optimizer(model(), "cfg"),
    ),
    P(
        "llmbook.train.evaluate",
        "data",
        lambda t: train.evaluate(model(), np.arange(100.0), tcfg()),
    ),
    P(
        "llmbook.train.load_checkpoint",
        "incomplete.pt",
        lambda t: train.load_checkpoint(checkpoint_without(t, "model_config"), model()),
    ),
    P(
        "llmbook.train.load_checkpoint",
        "optimizer",
        lambda t: train.load_checkpoint(
            train.save_checkpoint(t / "c.pt", model(), None, 0, train.History(), tcfg(), None),
            model(),
            train.configure_optimizer(model(), tcfg()),  # built for another model
        ),
    ),
    P("llmbook.train.lr_at", "step", lambda t: train.lr_at(-1, tcfg())),
    P(
        "llmbook.train.resolve_precision",
        "device",
        lambda t: train.resolve_precision("auto", "tpu9"),
    ),
    P(
        "llmbook.train.save_checkpoint",
        "step",
        lambda t: train.save_checkpoint(
            t / "c.pt", model(), None, -1, train.History(), tcfg(), None
        ),
    ),
    P(
        "llmbook.train.train",
        "train_data",
        lambda t: train.train(model(), np.arange(100.0), None, tcfg(), progress=False),
    ),
    P("llmbook.train.train_step", "optimizer", lambda t: one_step(model())()),
    P(
        "llmbook.train.train_step",
        "batches",
        lambda t: own_step(xy()),  # one (x, y) pair instead of a list of them
    ),
    P(
        "llmbook.train.train_step",
        "targets",
        lambda t: own_step([(xy()[0], torch.full((2, 4), -100))]),
    ),
    # zoo
    P("llmbook.zoo.Recipe", "name", lambda t: zoo.Recipe("Bad Name", "", {}, {})),
    P("llmbook.zoo.TextScore", "tokens", lambda t: zoo.TextScore(1.0, 0, 1, 1)),
    P(
        "llmbook.zoo.ZooModel",
        "model",
        lambda t: zoo.ZooModel("m", tok(), tiny_recipe(), train.History()),
    ),
    P(
        "llmbook.zoo.evaluate_text",
        "stride",
        lambda t: zoo.evaluate_text(model(), tokenizer.BPETokenizer(), "abc", stride=0),
    ),
    P("llmbook.zoo.get_recipe", "name_or_recipe", lambda t: zoo.get_recipe("nope")),
    P("llmbook.zoo.load", "name_or_recipe", lambda t: zoo.load("nope")),
    P("llmbook.zoo.main", "argv", lambda t: zoo.main(5)),
    P("llmbook.zoo.prepare_data", "cache_dir", lambda t: zoo.prepare_data(tiny_recipe(), 5)),
    P("llmbook.zoo.recipe_key", "recipe", lambda t: zoo.recipe_key(5)),
    P("llmbook.zoo.token_dtype", "tokenizer", lambda t: zoo.token_dtype("tok")),
]


def _probes_beside_this_file() -> list[Probe]:
    """Probes of the later modules live in ``tests/probes_<module>.py``, one file per module.

    Each defines ``PROBES``, a list of ``(key, match, call)`` rows with the meaning of
    :class:`Probe`, and may define ``NO_ARGUMENTS``, a set of keys; both join the tables here.
    """
    rows: list[Probe] = []
    for path in sorted(Path(__file__).parent.glob("probes_*.py")):
        spec = importlib.util.spec_from_file_location(f"_llmbook_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows += [Probe(*row) for row in module.PROBES]
        _EXTRA_NO_ARGUMENTS.update(getattr(module, "NO_ARGUMENTS", set()))
    return rows


_EXTRA_NO_ARGUMENTS: set[str] = set()
PROBES += _probes_beside_this_file()

#: Public callables that take no argument, so no input of theirs can be bad.
NO_ARGUMENTS = {
    "llmbook.attention.KVCache.reset",
    "llmbook.corpus.play_paths",
    "llmbook.corpus.plays_directory",
    "llmbook.corpus.pydoc_text",
    "llmbook.corpus.pydoc_topics",
    "llmbook.plotting.use_book_style",
    "llmbook.pretrained.bytes_to_unicode",
    "llmbook.pretrained.cl100k_base",
    "llmbook.pretrained.gpt2",
    "llmbook.tokenizer.cl100k_base",
    "llmbook.tokenizer.gpt2",
    "llmbook.train.History.to_dict",
    "llmbook.zoo.Recipe.data_spec",
    "llmbook.zoo.Recipe.identity",
    "llmbook.zoo.Recipe.model_config",
    "llmbook.zoo.Recipe.to_dict",
    "llmbook.zoo.Recipe.train_config",
    "llmbook.zoo.cache_dir",
} | _EXTRA_NO_ARGUMENTS
#: Public callables that refuse every call by design, with the reason.
REFUSE_ALWAYS = {
    "llmbook.pretrained.RankedBPETokenizer.save": "NotImplementedError: no merge list to write",
    "llmbook.pretrained.RankedBPETokenizer.train": "NotImplementedError: read from files only",
    "llmbook.pretrained.RankedBPETokenizer.load": "NotImplementedError: use the file loaders",
}


def public_callables() -> dict[str, Callable]:
    """Every public function, class and method of every module, keyed module.qualname."""
    names = [m.name for m in pkgutil.iter_modules(llmbook.__path__) if not m.name.startswith("_")]
    found: dict[str, Callable] = {}
    for module in [llmbook] + [importlib.import_module(f"llmbook.{n}") for n in names]:
        public = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in public:
            obj = getattr(module, name)
            if not (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj)):
                continue
            if module is not llmbook and obj.__module__ != module.__name__:
                continue  # imported from elsewhere: probed where it is defined
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
            if inspect.isclass(obj):
                for attr, raw in vars(obj).items():
                    member = getattr(obj, attr)
                    if attr[0] != "_" and callable(member) and not isinstance(raw, property):
                        found[f"{obj.__module__}.{obj.__qualname__}.{attr}"] = member
    return found


# -------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("probe", PROBES, ids=[f"{p.key}:{p.match}" for p in PROBES])
def test_bad_input_gets_a_clear_value_error(probe, tmp_path):
    with pytest.raises(ValueError, match=probe.match):
        probe.call(tmp_path)


def test_callables_that_refuse_every_call_do_so():
    api = public_callables()
    for key in REFUSE_ALWAYS:
        with pytest.raises(NotImplementedError):
            api[key](ranked(), "x") if key.endswith(".save") else api[key]("x")


def test_every_public_callable_has_a_probe():
    api = public_callables()
    probed = {p.key for p in PROBES}
    missing = sorted(set(api) - probed - NO_ARGUMENTS - set(REFUSE_ALWAYS))
    assert not missing, f"public callables without a bad-input probe in PROBES: {missing}"
    assert probed <= set(api), f"probes of unknown callables: {sorted(probed - set(api))}"
    for key in NO_ARGUMENTS:  # the exemption is true: nothing to pass
        params = list(inspect.signature(api[key]).parameters)
        assert params in ([], ["self"]), f"{key} takes arguments {params}: it needs a probe"


def test_a_crafted_split_pattern_in_a_file_is_refused_fast(tmp_path):
    import regex

    evil = regex.compile(EVIL_PATTERN)
    start = time.perf_counter()
    evil.match("a" * 16 + "b")  # 2^16 backtracking steps: the hang a tokenizer file could cause
    assert time.perf_counter() - start > 5e-3
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"crafted\.bpe.*not one of SPLIT_PATTERNS"):
        tokenizer.BPETokenizer.load(crafted_tokenizer_file(tmp_path))
    assert time.perf_counter() - start < 0.5
    # the caller may vouch for a pattern of their own, which loads
    own = tokenizer.BPETokenizer([(97, 98)], pattern=r"\w+|\W")
    own.save(tmp_path / "own.bpe")
    with pytest.raises(ValueError, match=r"own\.bpe"):
        tokenizer.BPETokenizer.load(tmp_path / "own.bpe")
    assert tokenizer.BPETokenizer.load(tmp_path / "own.bpe", pattern=r"\w+|\W").encode("ab") == [
        256
    ]


def test_train_step_refuses_an_optimizer_of_another_model_and_steps_with_its_own():
    m = model()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match="optimizer must hold exactly the model's"):
        train.train_step(m, train.configure_optimizer(model(), tcfg()), [xy()], lr=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    train.train_step(m, train.configure_optimizer(m, tcfg()), [xy()], lr=1e-2)
    assert not all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


def test_all_ignored_targets_are_refused_but_one_scored_target_is_enough():
    m, (x, _) = model(), xy()
    y = torch.full_like(x, -100)
    with pytest.raises(ValueError, match="no scored position"):
        m(x, y)
    y[0, 0] = 3
    loss = m(x, y)[1]
    assert torch.isfinite(loss)
    log_p = torch.log_softmax(m(x)[0][0, 0], -1)[3]
    assert loss.item() == pytest.approx(-log_p.item(), rel=1e-6)  # the mean over one target


def test_perplexity_of_an_integer_loss_is_e_to_the_loss():
    assert information.perplexity(torch.tensor(2)).item() == pytest.approx(math.e**2, rel=1e-12)
    assert information.perplexity(torch.tensor(3), base=2).item() == pytest.approx(8.0)
    assert information.nats_to_bits(torch.tensor(1)).item() == pytest.approx(1 / math.log(2))


def test_float_masks_take_finite_values_and_minus_infinity():
    q, k, v = qkv()
    bias = torch.zeros(3, 3)
    bias[0, 1:] = -math.inf
    out = attention.scaled_dot_product_attention(q, k, v, bias)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :])  # row 0 sees key 0 only
    with pytest.raises(ValueError, match="finite or -inf"):
        attention.scaled_dot_product_attention(q, k, v, bias.masked_fill(bias == 0, math.nan))


def test_tiny_temperatures_are_refused_and_the_minimum_samples_near_greedily():
    m, x = model(), xy()[0]
    with pytest.raises(ValueError, match="MIN_TEMPERATURE"):
        m.generate(x, 2, temperature=gpt.MIN_TEMPERATURE / 2)
    g = torch.Generator().manual_seed(0)
    sampled = m.generate(x, 3, temperature=gpt.MIN_TEMPERATURE, generator=g)
    assert torch.equal(sampled, m.generate(x, 3, greedy=True))  # logit gaps >> 1e-4 here


def test_kv_cache_refuses_a_later_update_in_another_dtype():
    cache_ = kv_cache_with_float32()
    k, v, _ = qkv(torch.float64)
    with pytest.raises(ValueError, match=r"cache holds torch\.float32"):
        cache_.update(k, v)
    assert cache_.length == 3  # untouched
    cache_.reset()
    assert cache_.update(k, v)[0].dtype == torch.float64  # a reset cache takes the new dtype


def test_load_checkpoint_names_the_file_and_what_is_missing(tmp_path):
    m = model()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match=r"incomplete\.pt.*lacks the keys \['model'\]"):
        train.load_checkpoint(checkpoint_without(tmp_path, "model"), m)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


# ------------------------------------------------------------------ valid alternative forms
def test_numpy_scalars_are_accepted_and_stored_as_python_numbers(tmp_path):
    c = gpt.GPTConfig(
        vocab_size=np.int64(11),
        block_size=np.int32(8),
        n_layer=1,
        n_head=2,
        d_model=np.int64(8),
        norm_eps=np.float64(1e-5),
        dropout=np.float32(0.0),
    )
    assert c == cfg() and type(c.vocab_size) is int and type(c.norm_eps) is float
    tc = train.TrainConfig(
        max_steps=np.int64(2),
        batch_size=2,
        block_size=4,
        warmup_steps=0,
        lr=np.float32(1e-3),
        betas=(np.float32(0.9), 0.95),
    )
    assert type(tc.lr) is float and type(tc.max_steps) is int
    m = gpt.GPT(c)
    path = train.save_checkpoint(tmp_path / "np.pt", m, None, 0, train.History(), tc, None)
    train.load_checkpoint(path, gpt.GPT(cfg()))  # weights_only=True reads plain numbers only
    assert train.lr_at(np.int64(1), tc) == pytest.approx(train.lr_at(1, tc))
    assert attention.causal_mask(np.int64(3)).shape == (3, 3)
    lengths = np.array([1, 3])
    assert attention.padding_mask(lengths, np.int32(3)).sum() == 4
    assert positional.sinusoidal_encoding(np.int64(4), np.int64(8)).shape == (4, 8)
    assert counting.kv_cache_bytes(c, np.int64(2), np.int64(4)) == counting.kv_cache_bytes(c, 2, 4)
    assert information.per_unit(1.0, np.int64(2), np.int32(4)) == 0.5
    assert information.entropy([0.5, 0.5], base=np.float32(2.0)) == pytest.approx(1.0)
    assert data.shingles("a b c", np.int64(2)) == {"a b", "b c"}
    x = xy()[0]
    temp = m.generate(x, 2, temperature=np.float32(0.5), top_k=np.int64(3))
    assert temp.shape == (2, 6)


def test_integer_id_tensors_of_other_dtypes_are_accepted():
    m, (x, y) = model(), xy()
    logits, loss = m(x, y)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        l2, loss2 = m(x.to(dtype), y.to(torch.int32) if dtype != torch.uint8 else y)
        assert torch.equal(l2, logits) and torch.equal(loss2, loss)
    out = m.generate(x.to(torch.uint8), 2, greedy=True)
    assert out.dtype == torch.int64 and torch.equal(out, m.generate(x, 2, greedy=True))
    with pytest.raises(ValueError, match="targets"):
        m(x, y.to(torch.uint8))  # unsigned targets cannot hold the ignore index -100


def test_uint8_token_arrays_are_accepted(tmp_path):
    ids = np.arange(50, dtype=np.uint8) % 11
    g = torch.Generator().manual_seed(0)
    xb, yb = data.get_batch(ids, 2, 4, generator=g)
    assert xb.dtype == torch.int64 and torch.equal(xb[:, 1:], yb[:, :-1])
    assert train.evaluate(model(), ids, tcfg()) > 0
    back = data.open_tokens(data.write_tokens(ids, tmp_path / "u8.bin"))
    np.testing.assert_array_equal(back, ids)
    counts = embeddings.cooccurrence_matrix(ids, 11, 1)
    assert counts.sum() == 2 * (len(ids) - 1)


# --------------------------------------------------------------------------- the tally
def classify(probe: Probe, folder: Path, seconds: int = 10) -> str:
    """``clear`` (ValueError naming the argument), ``vague`` (another error, or one not
    naming it), ``silent`` (no error) or ``hang`` (over ``seconds``)."""

    def timeout(*_):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            probe.call(folder)
    except TimeoutError:
        return "hang"
    except ValueError as err:
        return "clear" if re.search(probe.match, str(err)) else "vague"
    except Exception:
        return "vague"
    else:
        return "silent"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


if __name__ == "__main__":
    tally: dict[str, list[str]] = {"clear": [], "vague": [], "silent": [], "hang": []}
    for probe in PROBES:
        with tempfile.TemporaryDirectory() as folder:
            tally[classify(probe, Path(folder))].append(f"{probe.key} ({probe.match})")
    covered = len({p.key for p in PROBES})
    print(f"probes tried: {len(PROBES)} (covering {covered} public callables)")
    for kind, keys in tally.items():
        print(f"{kind}: {len(keys)}")
        for key in keys if kind != "clear" else []:
            print(f"    {key}")
    sys.exit(0 if len(tally["clear"]) == len(PROBES) else 1)
