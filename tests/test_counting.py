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


# ------------------------------------------------------------------ Chapter 9 additions
from llmbook.counting import (  # noqa: E402
    checkpoint_memory,
    gpu_hours,
    model_flops_utilization,
    pipeline_bubble_fraction,
    ring_allreduce_seconds,
    saved_activation_bytes,
    training_flops,
    zero_memory_per_rank,
)

GPT3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, d_model=12288)


def test_training_flops_split_and_gpt3():
    c = training_flops(2.0, 3.0)
    assert c == {"forward": 12.0, "backward": 24.0, "total": 36.0}
    # GPT-3's reported 3.14e23 is 6ND with the exact parameter count, not with 175e9
    N = count_parameters(GPT3)
    assert round(N / 1e9, 1) == 174.6
    assert f"{training_flops(N, 300e9)['total']:.3g}" == "3.14e+23"
    assert f"{training_flops(175e9, 300e9)['total']:.3g}" == "3.15e+23"


def test_training_flops_match_flops_per_token_without_attention():
    cfg = gpt2_config("small")
    N = count_parameters(cfg, non_embedding=True)
    per_token = flops_per_token(cfg, 1, training=True) - 6 * cfg.n_layer * cfg.d_model
    assert training_flops(N, 1)["total"] == pytest.approx(per_token, rel=1e-12)


def test_gpu_hours_and_mfu_are_inverse():
    # the well-known 280,000 A100-hours at 100% of 312 TFLOP/s
    assert gpu_hours(3.14e23, 312e12) == pytest.approx(279_558, rel=1e-4)
    assert gpu_hours(3.14e23, 312e12, 0.4) == pytest.approx(279_558 / 0.4, rel=1e-4)
    tokens_per_s = 1e5
    mfu = model_flops_utilization(6e9, tokens_per_s, 1e15)
    assert mfu == pytest.approx(0.6)
    hours = gpu_hours(6e9 * 3600 * tokens_per_s, 1e15, mfu)
    assert hours == pytest.approx(1.0)


def test_saved_activation_bytes_is_korthikanti_without_masks():
    cfg = gpt2_config("small")
    s, b, h, a, L = 1024, 4, 768, 12, 12
    masks = L * (2 * s * b * h + a * s * s * b)  # 1-byte dropout masks
    assert saved_activation_bytes(cfg, b, s, 2) + masks == activation_bytes(cfg, b, s)
    assert saved_activation_bytes(cfg, b, s, 4) == 2 * saved_activation_bytes(cfg, b, s, 2)


def test_zero_memory_per_rank_matches_the_paper():
    # Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 GPUs, K = 12
    psi, nd = 7.5e9, 64
    totals = [zero_memory_per_rank(int(psi), nd, s)["total"] / 1e9 for s in range(4)]
    assert [round(t, 1) for t in totals] == [120.0, 31.4, 16.6, 1.9]
    one = zero_memory_per_rank(1000, 1, 3)
    assert one == zero_memory_per_rank(1000, 1, 0) and one["total"] == 16_000
    # the stages only ever shrink memory
    for n in (2, 8):
        t = [zero_memory_per_rank(10**6, n, s)["total"] for s in range(4)]
        assert t == sorted(t, reverse=True)


def test_pipeline_bubble_limits():
    assert pipeline_bubble_fraction(1, 5) == 0
    assert pipeline_bubble_fraction(4, 1) == pytest.approx(3 / 4)
    assert pipeline_bubble_fraction(4, 12) == pytest.approx(3 / 15)
    assert pipeline_bubble_fraction(8, 10**6) < 1e-5


def test_ring_allreduce_seconds():
    assert ring_allreduce_seconds(1e9, 1, 1e9, 1.0) == 0
    assert ring_allreduce_seconds(1e9, 2, 1e9) == pytest.approx(1.0)
    # the bandwidth term tends to 2 n / B as p grows
    assert ring_allreduce_seconds(1e9, 1024, 1e9) == pytest.approx(2 * 1023 / 1024)
    assert ring_allreduce_seconds(0, 4, 1e9, 1e-5) == pytest.approx(6e-5)


def test_checkpoint_memory_sqrt_schedule():
    for L in (4, 16, 48, 100):
        best = min(range(1, L + 1), key=lambda k: checkpoint_memory(L, k))
        assert abs(best - L**0.5) <= 1.5
        assert checkpoint_memory(L, best) <= 2 * L**0.5 + 1
    assert checkpoint_memory(12, 1) == 13 and checkpoint_memory(12, 12) == 13


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: training_flops(0, 1), "n_params"),
        (lambda: gpu_hours(1e20, 1e14, 0), "mfu"),
        (lambda: gpu_hours(1e20, 1e14, 1.5), "mfu"),
        (lambda: zero_memory_per_rank(10, 2, 4), "stage"),
        (lambda: ring_allreduce_seconds(1, 2, 0), "bandwidth"),
        (lambda: checkpoint_memory(4, 5), "segment"),
        (lambda: pipeline_bubble_fraction(0, 1), "n_stages"),
    ],
)
def test_chapter9_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
