"""Tests of llmbook.counting: parameters, FLOPs, memory, KV cache.

Parameter counts are integers and must match exactly (``GPT(cfg).num_parameters()`` and
Hugging Face's ``GPT2LMHeadModel``, both built on the meta device so that no memory is
allocated). The published GPT-2 sizes 124,439,808 / 354,823,168 / 774,030,080 /
1,557,611,200 round to 124M / 355M / 774M / 1.5B (1.56B). The GPT-2 paper's Table 2
reported 117M, 345M, 762M and 1542M; OpenAI's released checkpoints are named 124M and
355M, the counts recomputed here.
"""

import itertools

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llmbook.counting import (
    activation_bytes,
    count_parameters,
    flops_per_token,
    kv_cache_bytes,
    memory_bytes,
)
from llmbook.gpt import GPT, GPTConfig

GPT2_SIZES = {  # name: (n_layer, n_head, d_model, published parameter count)
    "small": (12, 12, 768, 124_439_808),
    "medium": (24, 16, 1024, 354_823_168),
    "large": (36, 20, 1280, 774_030_080),
    "xl": (48, 25, 1600, 1_557_611_200),
}


def gpt2_config(name: str) -> GPTConfig:
    n_layer, n_head, d, _ = GPT2_SIZES[name]
    return GPTConfig(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head, d_model=d)


@pytest.mark.parametrize("name", list(GPT2_SIZES))
def test_gpt2_published_sizes(name):
    assert count_parameters(gpt2_config(name)) == GPT2_SIZES[name][3]


@pytest.mark.parametrize("name", ["small", "medium"])
def test_gpt2_sizes_match_hugging_face_and_our_model(name):
    n_layer, n_head, d, expected = GPT2_SIZES[name]
    hf_cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=d)
    with torch.device("meta"):
        hf = GPT2LMHeadModel(hf_cfg)
        ours = GPT(gpt2_config(name))
    assert sum(p.numel() for p in hf.parameters()) == expected
    assert ours.num_parameters() == expected


def test_gpt2_papers_rounded_sizes():
    millions = {k: round(v[3] / 1e6) for k, v in GPT2_SIZES.items()}
    assert millions == {"small": 124, "medium": 355, "large": 774, "xl": 1558}
    assert round(GPT2_SIZES["xl"][3] / 1e9, 1) == 1.6 and GPT2_SIZES["xl"][3] > 1.5e9


GRID = list(
    itertools.product(
        ["learned", "sinusoidal", "rope", "alibi"],
        ["layernorm", "rmsnorm"],
        [True, False],  # prenorm
        ["gelu", "swiglu"],
        [True, False],  # bias
        [True, False],  # tie
    )
)


@pytest.mark.parametrize("variant", GRID)
def test_count_parameters_equals_the_model(variant):
    positional, norm, prenorm, activation, bias, tie = variant
    cfg = GPTConfig(
        vocab_size=37, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=16, d_ff=24,
        positional=positional, norm=norm, prenorm=prenorm, activation=activation, bias=bias,
        tie_embeddings=tie,
    )  # fmt: skip
    with torch.device("meta"):
        model = GPT(cfg)
    assert count_parameters(cfg) == model.num_parameters()
    assert count_parameters(cfg, non_embedding=True) == model.num_parameters(non_embedding=True)
    assert count_parameters(cfg, non_embedding=True) < count_parameters(cfg)


def test_twelve_d_squared_per_layer():
    cfg = gpt2_config("small")
    n = count_parameters(cfg, non_embedding=True)
    assert n == 85_056_000  # 12 * 7,087,872 per block + 1,536 final LayerNorm
    assert abs(n - 12 * 12 * 768**2) / n < 0.002  # Kaplan's N = 12 L d^2 within 0.2%


def test_flops_per_token():
    cfg = gpt2_config("small")
    N = count_parameters(cfg, non_embedding=True)
    fwd = flops_per_token(cfg, 1024)
    assert fwd == 2 * N + 2 * 12 * 1024 * 768
    assert flops_per_token(cfg, 1024, training=True) == 3 * fwd
    assert flops_per_token(cfg, 1024, include_head=True) == fwd + 2 * 768 * 50257
    # the attention term is linear in T and small next to 2N at GPT-2's context
    assert flops_per_token(cfg, 2048) - fwd == 2 * 12 * 1024 * 768
    assert 0.1 < (fwd - 2 * N) / (2 * N) < 0.12
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(cfg, 0)


def test_kv_cache_bytes_known_values():
    # Llama-2-7B: 32 layers, 32 heads of 128; 4,096 positions in float16 = 2 GiB
    llama7b = GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, d_model=4096)
    assert kv_cache_bytes(llama7b, 1, 4096, 2) == 2 * 1024**3
    gqa = GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_kv_head=8,
                    d_model=4096)  # fmt: skip
    assert kv_cache_bytes(gqa, 1, 4096, 2) == 2 * 1024**3 // 4
    assert kv_cache_bytes(gqa, 3, 100, 4) == 2 * 32 * 8 * 128 * 100 * 3 * 4
    with pytest.raises(ValueError, match="batch"):
        kv_cache_bytes(gqa, 0, 10)


def test_memory_bytes():
    cfg = gpt2_config("small")
    P = 124_439_808
    m = memory_bytes(cfg, batch=2, seq_len=512)
    assert m["weights"] == m["gradients"] == 4 * P
    assert m["optimizer"] == 8 * P  # Adam: m and v in float32
    acts = 12 * (34 * 512 * 2 * 768 + 5 * 12 * 512**2 * 2)  # Korthikanti et al. eq. 2
    assert m["activations"] == acts == activation_bytes(cfg, 2, 512)
    assert m["total"] == 16 * P + acts
    inf = memory_bytes(cfg, training=False, bytes_per_param=2)
    assert inf == {
        "weights": 2 * P,
        "kv_cache": kv_cache_bytes(cfg, 1, 1024, 2),
        "total": 2 * P + kv_cache_bytes(cfg, 1, 1024, 2),
    }
    assert memory_bytes(cfg, optimizer="sgd")["optimizer"] == 0
    with pytest.raises(ValueError, match="optimizer"):
        memory_bytes(cfg, optimizer="lion")
    with pytest.raises(ValueError, match="cfg"):
        count_parameters({"n_layer": 12})
