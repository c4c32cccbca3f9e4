"""Tests of llmbook.gpt: the GPT model, its variants, generation and the HF loaders.

Cross-checks build Hugging Face models from small configs with random weights (nothing is
downloaded). HF's init (std 0.02) gives logits of order 1e-2, where a wrong transpose
would hide under a loose tolerance, so every parameter is redrawn with standard deviation
0.3 (norm gains around 1): logits are then of order 1-10 and any wiring error moves them
by O(1).

Tolerances. GPT-2: the same operations in the same order (measured difference: exactly 0
in float32, ~1e-15 in float64, on logits up to 12); we allow 1e-5 in float32 (a few ulps
of logits of size ~10, in case a kernel reorders a sum) and 1e-10 in float64. Llama: HF's
RMSNorm and rotary embedding compute in float32 even for float64 models (they upcast to
float32, then cast back), so float64 only agrees to float32 accuracy. Measured: max
|difference| 1.0e-5 to 1.6e-5 on logits up to 12 (relative 1e-6) in both dtypes, float32
round-off amplified by the random weights' gain; we use 1e-4 in both dtypes, still four
orders below the O(1) effect of a wiring error (test_wrong_rope_layout_would_be_caught).

Losses: ours is compared to the cross-entropy of HF's logits at the logits' tolerance, and
to HF's own ``labels=`` loss at 1e-5 (Llama: 1e-4), because HF upcasts the logits and
computes that loss in float32 in either dtype.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from llmbook.gpt import GPT, GPTConfig

V, CTX = 97, 32


def randomize(model, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if ("norm" in name or "ln_" in name) and name.endswith("weight") else 0.0
            p.copy_(base + std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=V, block_size=CTX, n_layer=2, n_head=4, d_model=32)
    return GPTConfig(**{**base, **kw})


def ids(B=2, T=20, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def hf_gpt2(**kw):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=CTX, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=0, eos_token_id=0, **kw)  # fmt: skip
    cfg._attn_implementation = "eager"
    return randomize(GPT2LMHeadModel(cfg))


def hf_llama(tie=False):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CTX,
                      rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                      tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0,
                      pad_token_id=None)  # fmt: skip
    cfg._attn_implementation = "eager"
    return randomize(LlamaForCausalLM(cfg))


def compare(hf, ours, atol, hf_loss_atol=1e-5):
    idx = ids()
    with torch.no_grad():
        ref = hf(idx, labels=idx)
        logits, _ = ours(idx)
        _, loss = ours(idx[:, :-1], idx[:, 1:])  # HF shifts the labels inside
    assert ref.logits.abs().max() > 1.0  # the check has something to see
    torch.testing.assert_close(logits, ref.logits, atol=atol, rtol=0)
    # HF computes its loss in float32 whatever the model's dtype (it upcasts the logits)
    torch.testing.assert_close(loss.float(), ref.loss, atol=hf_loss_atol, rtol=0)
    own = F.cross_entropy(ref.logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten())
    torch.testing.assert_close(loss, own, atol=atol, rtol=0)


# ----------------------------------------------------------------------- cross-checks
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_matches_hf_gpt2(dtype, atol):
    hf = hf_gpt2().to(dtype)
    ours = GPT.from_hf_gpt2(hf).eval()
    c = ours.config
    assert (c.n_layer, c.n_head, c.d_model, c.d_ff, c.activation) == (2, 4, 64, 256, "gelu_tanh")
    assert c.tie_embeddings and ours.lm_head.weight is ours.wte.weight
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())
    compare(hf, ours, atol)


def test_gpt2_state_dict_loader_infers_config_and_rejects_bad_dicts():
    hf = hf_gpt2()
    ours = GPT.from_hf_gpt2_state_dict(hf.state_dict(), n_head=4).eval()
    assert ours.config == GPT.from_hf_gpt2(hf).config
    compare(hf, ours, 1e-5)
    sd = dict(hf.state_dict())
    sd["transformer.h.0.mlp.c_fc.weight"] = sd["transformer.h.0.mlp.c_fc.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"mlp\.fc\.weight"):
        GPT.from_hf_gpt2_state_dict(sd, ours.config)


def test_gpt2_loader_rejects_unsupported_options():
    hf = hf_gpt2(scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        GPT.from_hf_gpt2(hf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tie", [False, True])
def test_matches_hf_llama(dtype, tie):
    hf = hf_llama(tie).to(dtype)
    ours = GPT.from_hf_llama(hf).eval()
    c = ours.config
    assert (c.positional, c.norm, c.activation, c.bias) == ("rope", "rmsnorm", "swiglu", False)
    assert (c.n_head, c.n_kv_head, c.d_ff, c.rope_base, c.tie_embeddings) == (4, 2, 112, 500, tie)
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())
    compare(hf, ours, 1e-4, 1e-4)


def test_wrong_rope_layout_would_be_caught():
    """The Llama check can fail: a model with RoPE switched off disagrees by O(1)."""
    hf = hf_llama()
    ours = GPT.from_hf_llama(hf).eval()
    for block in ours.blocks:
        block.attn.positional = "none"
    with pytest.raises(AssertionError):
        compare(hf, ours, 1e-3)


# -------------------------------------------------------------------------- generation
@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope", "alibi"])
def test_cached_generation_equals_uncached(positional):
    torch.manual_seed(0)
    model = randomize(GPT(tiny(positional=positional, n_kv_head=2)).double())
    prompt = ids(B=2, T=5)
    # 40 new tokens run past block_size=32: the window slides, the cache is dropped
    fast = model.generate(prompt, 40, greedy=True, use_cache=True)
    slow = model.generate(prompt, 40, greedy=True, use_cache=False)
    assert fast.shape == (2, 45) and torch.equal(fast[:, :5], prompt)
    assert torch.equal(fast, slow)
    g1, g2 = (torch.Generator().manual_seed(3) for _ in range(2))
    a = model.generate(prompt, 10, temperature=0.8, top_k=5, generator=g1)
    b = model.generate(prompt, 10, temperature=0.8, top_k=5, generator=g2, use_cache=False)
    assert torch.equal(a, b)


def test_cached_logits_equal_full_forward():
    model = randomize(GPT(tiny(positional="rope", n_kv_head=1)).double())
    idx = ids(B=1, T=12)
    full, _ = model(idx)
    from llmbook.attention import KVCache

    caches = [KVCache(CTX) for _ in model.blocks]
    steps = [model._logits(idx[:, :7], caches)]
    steps += [model._logits(idx[:, t : t + 1], caches) for t in range(7, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-12, rtol=0)


def test_top_k_one_is_greedy_and_generate_validates():
    model = randomize(GPT(tiny()))
    prompt = ids(B=1, T=3)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(
        model.generate(prompt, 6, top_k=1, generator=g), model.generate(prompt, 6, greedy=True)
    )
    assert torch.equal(model.generate(prompt, 0), prompt)
    for kw, name in [({"temperature": 0.0}, "temperature"), ({"top_k": 0}, "top_k")]:
        with pytest.raises(ValueError, match=name):
            model.generate(prompt, 3, **kw)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt, -1)


# ---------------------------------------------------------------------------- variants
VARIANTS = list(
    itertools.product(
        ["learned", "sinusoidal", "rope", "alibi"],
        ["layernorm", "rmsnorm"],
        [True, False],  # prenorm
        ["gelu", "gelu_tanh", "relu", "swiglu"],
        [True, False],  # bias
        [True, False],  # tie_embeddings
    )
)


def test_every_variant_trains_one_step():
    idx, targets = ids(B=2, T=8), ids(B=2, T=8, seed=2)
    for n, (positional, norm, prenorm, activation, bias, tie) in enumerate(VARIANTS):
        torch.manual_seed(n)
        cfg = tiny(positional=positional, norm=norm, prenorm=prenorm, activation=activation,
                   bias=bias, tie_embeddings=tie, n_layer=1, d_model=16, dropout=0.1,
                   attn_implementation="fused" if n % 2 else "explicit")  # fmt: skip
        model = GPT(cfg)
        logits, loss = model(idx, targets)
        assert logits.shape == (2, 8, V) and torch.isfinite(loss)
        assert abs(loss.item() - torch.log(torch.tensor(float(V)))) < 1.0  # ~uniform at init
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), cfg


@pytest.mark.parametrize("positional", ["learned", "rope", "alibi"])
@pytest.mark.parametrize("B,T", [(1, 20), (4, 20)])  # B*T < 64: three projections; >= 64: one
def test_fused_path_equals_explicit_path(positional, B, T):
    """The fused path (is_causal kernel, unmasked single-query decoding, concatenated
    W_Q;W_K;W_V) computes the same logits as the explicit equations, with and without the
    KV cache, and for GQA."""
    a = randomize(GPT(tiny(positional=positional, n_kv_head=2)).double())
    b = GPT(tiny(positional=positional, n_kv_head=2, attn_implementation="fused")).double()
    b.load_state_dict(a.state_dict())
    b.eval()
    idx = ids(B=B, T=T)
    torch.testing.assert_close(b(idx)[0], a(idx)[0], atol=1e-12, rtol=0)
    from llmbook.attention import KVCache

    caches = [KVCache(CTX) for _ in b.blocks]
    steps = [b._logits(idx[:, :7], caches)]
    steps += [b._logits(idx[:, t : t + 1], caches) for t in range(7, T)]
    torch.testing.assert_close(torch.cat(steps, 1), a(idx)[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "swiglu"])
def test_feedforward_equals_the_written_out_formulas(activation):
    """The model calls torch's one-kernel activations; they equal llmbook.functional's."""
    from llmbook.functional import gelu, relu, swiglu
    from llmbook.gpt import FeedForward

    ffn = FeedForward(tiny(activation=activation)).double()
    x = torch.randn(3, 5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = ffn.fc(x)
    if activation == "swiglu":
        h = swiglu(h, ffn.up(x))
    elif activation == "relu":
        h = relu(h)
    else:
        h = gelu(h, "tanh" if activation == "gelu_tanh" else "none")
    torch.testing.assert_close(ffn(x), ffn.proj(h), atol=1e-12, rtol=0)


def test_implementations_agree_and_ignore_index():
    a = randomize(GPT(tiny(positional="alibi")))
    b = GPT(tiny(positional="alibi", attn_implementation="fused"))
    b.load_state_dict(a.state_dict())
    b.eval()
    idx, targets = ids(), ids(seed=3)
    torch.testing.assert_close(a(idx)[0], b(idx)[0], atol=1e-5, rtol=0)
    targets[:, :10] = -100
    logits, loss = a(idx, targets)
    ref = torch.nn.functional.cross_entropy(
        logits[:, 10:].reshape(-1, V), targets[:, 10:].reshape(-1)
    )
    torch.testing.assert_close(loss, ref)


def test_residual_init_scaling():
    torch.manual_seed(0)
    std = GPT(tiny(n_layer=8, d_model=256)).blocks[0].mlp.proj.weight.std().item()
    assert std == pytest.approx(0.02 / 4, rel=0.05)
    std = GPT(tiny(n_layer=8, d_model=256, scale_residual_init=False)).blocks[0].mlp.proj.weight
    assert std.std().item() == pytest.approx(0.02, rel=0.05)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"d_model": 30, "n_head": 4}, "divisible by n_head"),
        ({"n_head": 4, "n_kv_head": 3}, "divisible by n_kv_head"),
        ({"d_model": 12, "n_head": 4, "positional": "rope"}, "even head dimension"),
        ({"positional": "absolute"}, "positional"),
        ({"norm": "batchnorm"}, "norm"),
        ({"activation": "tanh"}, "activation"),
        ({"attn_implementation": "flash"}, "attn_implementation"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"n_layer": -1}, "n_layer"),
        ({"d_ff": 0}, "d_ff"),
        ({"dropout": 1.0}, "dropout"),
        ({"norm_eps": 0.0}, "norm_eps"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_defaults_and_bad_forward_input():
    cfg = tiny()
    assert cfg.n_kv_head == 4 and cfg.d_ff == 128 and cfg.d_head == 8
    model = GPT(cfg)
    with pytest.raises(ValueError, match="block_size=32"):
        model(ids(T=CTX + 1))
    with pytest.raises(ValueError, match=r"allowed: 0\.\.96"):
        model(torch.tensor([[0, V]]))
    with pytest.raises(ValueError, match="2-d integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="targets"):
        model(ids(), ids(T=3))
    with pytest.raises(ValueError, match="cfg"):
        GPT({"n_layer": 2})
