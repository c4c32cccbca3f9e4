"""Long context (Chapter 14): peak memory, streaming with attention sinks, context
extension of a RoPE model, the needle-in-a-haystack task.

Models are small random GPTs built from a config with a fixed seed (no zoo). Equalities
that hold in exact arithmetic are checked in float64 at 1e-10 (a few hundred float64
roundings, ~1e-16 each, stay far below it; a wrong position or mask is off by O(1)).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmbook.attention import scaled_dot_product_attention, tiled_attention
from llmbook.gpt import GPT, GPTConfig
from llmbook.longcontext import (
    CUE,
    NEEDLE,
    StreamingKVCache,
    extend_context,
    needle_accuracy,
    needle_batch,
    needle_prompt,
    peak_tensor_memory,
    streaming_nll,
    train_needle,
    windowed_nll,
)
from llmbook.positional import rope_frequencies, yarn_attention_factor
from llmbook.tokenizer import BPETokenizer
from llmbook.train import TrainConfig


def rope_gpt(n_layer=2, block_size=32, seed=0, **kw) -> GPT:
    cfg = GPTConfig(vocab_size=23, block_size=block_size, n_layer=n_layer, n_head=2,
                    d_model=16, positional="rope", bias=False, **kw)  # fmt: skip
    torch.manual_seed(seed)
    return GPT(cfg).double().eval()


def ids(B=2, N=40, seed=1):
    return torch.randint(0, 23, (B, N), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- memory
def test_peak_memory_of_exact_attention_is_quadratic_and_of_tiled_linear():
    peaks = {}
    for T in (128, 256, 512):
        q = torch.randn(1, 1, T, 16)
        exact, _ = peak_tensor_memory(lambda q=q: scaled_dot_product_attention(q, q, q))
        tiled, _ = peak_tensor_memory(lambda q=q: tiled_attention(q, q, q, block_q=32, block_k=32))
        peaks[T] = (exact, tiled)
        assert exact >= T * T * 4  # at least the float32 score matrix
        assert tiled < T * 16 * 4 + 8 * 32 * 32 * 4  # the output and a few tiles

    def growth(i):  # (p(512) - p(256)) / (p(256) - p(128)): 4 if quadratic, 2 if linear
        return (peaks[512][i] - peaks[256][i]) / (peaks[256][i] - peaks[128][i])

    assert 3.5 < growth(0) < 4.5 and 1.5 < growth(1) < 2.5


def test_peak_memory_counts_what_is_live_and_returns_the_result():
    def fn():
        a = torch.ones(1000)  # 4,000 bytes
        b = torch.ones(500)  # 2,000 more while a lives
        del a
        return b * 2  # a is freed: peak stays 6,000

    peak, out = peak_tensor_memory(fn)
    assert peak == 6000 and out.sum().item() == 1000
    x = torch.ones(10_000)
    assert peak_tensor_memory(lambda: x.view(100, 100).t())[0] == 0  # a view of an input


# ---------------------------------------------------------------------- streaming
def test_streaming_equals_the_plain_model_until_the_cache_is_full():
    m, x = rope_gpt(), ids(N=20)
    full = F.cross_entropy(m(x)[0][:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
    for n_sink in (0, 3):
        got = streaming_nll(m, x, window=20 - n_sink, n_sink=n_sink)
        torch.testing.assert_close(got, full, rtol=0, atol=1e-10)


def test_one_layer_streaming_equals_recomputing_the_kept_tokens():
    # In one layer, a token's key and value depend on the token and its position only, so
    # the cache after evictions equals a fresh pass over the kept tokens at 0, 1, ...
    m, x = rope_gpt(n_layer=1), ids(B=1, N=30)
    S, W = 2, 6
    got = streaming_nll(m, x, window=W, n_sink=S)
    for t in (10, 20, 28):  # token t is scored from the sinks and the last W tokens
        kept = torch.cat((x[:, :S], x[:, t - W + 1 : t + 1]), dim=1)
        logits = m(kept)[0][:, -1]
        want = F.cross_entropy(logits, x[:, t + 1])
        torch.testing.assert_close(got[0, t], want, rtol=0, atol=1e-10)


def test_streaming_cache_re_rotates_keys_by_one_position():
    freqs = rope_frequencies(8)
    c = StreamingKVCache(1, 2, freqs)
    from llmbook.positional import apply_rope

    raw = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    for i in range(3):
        k, _ = c.update(apply_rope(raw[:, :, i : i + 1], torch.tensor([i]), freqs=freqs,
                                   layout="half"), raw[:, :, i : i + 1])  # fmt: skip
    k, v = c.update(apply_rope(raw[:, :, 3:4], torch.tensor([2]), freqs=freqs, layout="half"),
                    raw[:, :, 3:4])  # fmt: skip
    kept = raw[:, :, [0, 2, 3]]  # token 1 evicted
    want = apply_rope(kept, torch.arange(3), freqs=freqs, layout="half")
    torch.testing.assert_close(k, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(v, kept)
    assert c.length == 3 and c.evicted == 1


def test_windowed_nll_recomputes_each_window():
    m, x = rope_gpt(), ids(B=1, N=25)
    got = windowed_nll(m, x, context=8, batch_size=5)
    assert got.shape == (1, 24)
    head = F.cross_entropy(m(x[:, :8])[0][0, :-1], x[0, 1:8], reduction="none")
    torch.testing.assert_close(got[0, :7], head)
    t = 15  # token t + 1 from x[t-7 .. t]
    want = F.cross_entropy(m(x[:, t - 7 : t + 1])[0][:, -1], x[:, t + 1])
    torch.testing.assert_close(got[0, t], want, rtol=0, atol=1e-10)
    # with the whole sequence as context it is the plain model
    full = F.cross_entropy(m(x)[0][0, :-1], x[0, 1:], reduction="none")
    torch.testing.assert_close(windowed_nll(m, x, context=25)[0], full)


# ----------------------------------------------------------------------- extension
@pytest.mark.parametrize("scaling,scale", [("none", 1.0), ("linear", 4.0), ("ntk", 4.0),
                                           ("yarn", 4.0)])  # fmt: skip
def test_extend_context_sets_every_layers_frequencies(scaling, scale):
    m = rope_gpt(block_size=16)
    big = extend_context(m, 64, scaling=scaling, scale=scale)
    want = rope_frequencies(8, scaling=scaling, scale=scale, original_length=16)
    assert big.config.block_size == 64 and m.config.block_size == 16
    for block in big.blocks:
        torch.testing.assert_close(block.attn.rope_freqs, want.to(block.attn.rope_freqs.dtype))
    assert torch.equal(m.blocks[0].attn.rope_freqs, rope_frequencies(8))  # original unchanged


def test_extend_context_without_scaling_gives_the_same_logits_inside_the_old_context():
    m, x = rope_gpt(block_size=16), ids(N=16)
    big = extend_context(m, 64)
    torch.testing.assert_close(big(x)[0], m(x)[0], rtol=0, atol=1e-12)
    assert big(ids(N=64))[0].shape == (2, 64, 23)


def test_linear_scaling_equals_feeding_positions_divided_by_s():
    m, x = rope_gpt(block_size=16), ids(N=32)
    pi = extend_context(m, 32, scaling="linear", scale=2.0)
    # position interpolation: positions m/s with the original frequencies
    big = extend_context(m, 32)
    halves = rope_gpt(block_size=32)
    halves.load_state_dict(m.state_dict())
    for block in halves.blocks:
        block.attn.rope_freqs = block.attn.rope_freqs / 2
    torch.testing.assert_close(pi(x)[0], halves(x)[0], rtol=0, atol=1e-12)
    assert not torch.allclose(pi(x)[0], big(x)[0])


def test_yarn_folds_its_attention_factor_into_queries_and_keys():
    m = rope_gpt(block_size=16)
    y = extend_context(m, 64, scaling="yarn", scale=4.0)
    f = yarn_attention_factor(4.0)
    torch.testing.assert_close(y.blocks[1].attn.q_proj.weight, f * m.blocks[1].attn.q_proj.weight)
    torch.testing.assert_close(y.blocks[0].attn.k_proj.weight, f * m.blocks[0].attn.k_proj.weight)
    torch.testing.assert_close(y.blocks[0].attn.v_proj.weight, m.blocks[0].attn.v_proj.weight)


# -------------------------------------------------------------------------- needle
def haystack_ids(n=3000):
    return np.frombuffer(("to be or not to be, that is the question. " * 80)[:n].encode(),
                         dtype=np.uint8)  # fmt: skip


def test_needle_batch_rows_hide_the_number_and_score_only_the_answer():
    tok = BPETokenizer()  # bytes: one token per character
    x, y = needle_batch(haystack_ids(), tok, 16, 80, digits=2, rng=random.Random(0))
    assert x.shape == y.shape == (16, 80)
    for row_x, row_y in zip(x, y, strict=True):
        text = bytes(row_x.tolist()).decode() + chr(row_y[-1].item())
        assert text.count(CUE) == 1 and text.endswith(CUE + text[-2:])
        number = text[-2:]
        assert number.isdigit() and NEEDLE.format(number) in text[: -len(CUE) - 2]
        assert (row_y[:-2] == -100).all() and bytes(row_y[-2:].tolist()).decode() == number
    x2, _ = needle_batch(haystack_ids(), tok, 16, 80, digits=2, rng=random.Random(0))
    assert torch.equal(x, x2)  # seeded


def test_train_needle_learns_a_one_digit_needle():
    tok = BPETokenizer()
    cfg = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, d_model=32,
                    positional="rope", bias=False)  # fmt: skip
    torch.manual_seed(0)
    m = GPT(cfg)
    tc = TrainConfig(max_steps=60, batch_size=16, block_size=64, lr=1e-2, min_lr=1e-3,
                     warmup_steps=10, eval_interval=30, eval_batches=2)  # fmt: skip
    hist = train_needle(m, haystack_ids(), haystack_ids(), tok, tc, progress=False)
    assert len(hist.train_losses) == 60 and hist.val_steps == [0, 30, 60]
    assert hist.val_losses[-1] < 0.5 * hist.val_losses[0]  # from ~ln 256 towards 0


def test_needle_prompt_places_the_needle_at_the_depth():
    hay, nd, cue = list(range(10)), [100, 101], [200]
    assert needle_prompt(hay, nd, cue, 0.0) == [100, 101, *range(10), 200]
    assert needle_prompt(hay, nd, cue, 1.0) == [*range(10), 100, 101, 200]
    assert needle_prompt(hay, nd, cue, 0.5) == [*range(5), 100, 101, *range(5, 10), 200]


def test_needle_accuracy_of_a_random_model_is_near_chance_and_shaped():
    tok = BPETokenizer()  # bytes
    cfg = GPTConfig(vocab_size=256, block_size=96, n_layer=1, n_head=2, d_model=16,
                    positional="rope", bias=False)  # fmt: skip
    torch.manual_seed(0)
    m = GPT(cfg).eval()
    acc = needle_accuracy(m, tok, "to be or not to be " * 20, [48, 64], [0.0, 1.0],
                          trials=4, seed=0)  # fmt: skip
    assert acc.shape == (2, 2) and ((0 <= acc) & (acc <= 1)).all()


class _Oracle(GPT):
    """Answers every prompt with the digit of the needle it contains (a perfect retriever)."""

    def generate(self, idx, max_new_tokens, **kw):  # type: ignore[override]
        digits = [bytes(row.tolist()).decode().split("number is ")[1][0] for row in idx]
        return torch.cat((idx, torch.tensor([[ord(d)] for d in digits])), dim=1)


def test_needle_accuracy_of_a_perfect_retriever_is_one():
    tok = BPETokenizer()
    cfg = GPTConfig(vocab_size=256, block_size=96, n_layer=1, n_head=2, d_model=16,
                    positional="rope")  # fmt: skip
    acc = needle_accuracy(_Oracle(cfg), tok, "to be or not to be " * 20, [60, 80],
                          [0.0, 0.5, 1.0], trials=5)  # fmt: skip
    assert np.array_equal(acc, np.ones((2, 3)))


# ------------------------------------------------------------------------ bad input
def test_bad_input():
    m = rope_gpt()
    with pytest.raises(ValueError, match="positional='rope'"):
        streaming_nll(GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1,
                                    d_model=4)), ids(), window=4)  # fmt: skip
    with pytest.raises(ValueError, match="window"):
        streaming_nll(m, ids(), window=0)
    with pytest.raises(ValueError, match="ids"):
        streaming_nll(m, torch.zeros(2, 5), window=4)
    with pytest.raises(ValueError, match="context"):
        windowed_nll(m, ids(), context=33)
    with pytest.raises(ValueError, match="scaling"):
        extend_context(m, 64, scaling="magic")
    with pytest.raises(ValueError, match="scale"):
        extend_context(m, 64, scaling="linear", scale=0.5)
    with pytest.raises(ValueError, match="depth"):
        needle_prompt([1], [2], [3], 1.5)
    with pytest.raises(ValueError, match="block_size"):
        needle_batch(haystack_ids(), BPETokenizer(), 2, 20, rng=random.Random(0))
    with pytest.raises(ValueError, match="fn"):
        peak_tensor_memory(3)
    c = StreamingKVCache(0, 2, rope_frequencies(4))
    c.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    with pytest.raises(ValueError, match="one token at a time"):
        c.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
