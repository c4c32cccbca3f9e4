"""Tests of llmbook.compress: the distillation loss, magnitude pruning (against
torch.nn.utils.prune) and structured pruning of heads and feed-forward neurons.

Models are tiny GPTs in float64 with fixed seeds. Tolerance 1e-12: float64 sums of the same
terms in another order agree to ~1e-15 relative.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from llmbook.compress import (
    distillation_loss,
    magnitude_mask,
    magnitude_prune,
    neuron_scores,
    prune_heads,
    prune_neurons,
    weight_sparsity,
)
from llmbook.gpt import GPT, GPTConfig

TOL = dict(rtol=1e-12, atol=1e-12)


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, block_size=16, n_layer=2, n_head=4, d_model=16, bias=True)
    return GPT(GPTConfig(**(cfg | kw))).double().eval()


def ids(B: int = 2, T: int = 16, V: int = 40) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


def logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------ distillation
def test_distillation_loss_equals_cross_entropy_plus_t2_times_torch_kl_div():
    s, t = logits(3, 5, 11, seed=0), 2 * logits(3, 5, 11, seed=1)
    y = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(2))
    y[0, :2] = -100
    keep = y.reshape(-1) != -100
    s2, t2, y2 = s.reshape(-1, 11)[keep], t.reshape(-1, 11)[keep], y.reshape(-1)[keep]
    for tau, a in ((1.0, 0.5), (2.0, 0.3), (4.0, 0.0), (0.5, 1.0)):
        kl = F.kl_div(
            F.log_softmax(s2 / tau, -1),
            F.log_softmax(t2 / tau, -1),
            reduction="batchmean",
            log_target=True,
        )
        ref = a * F.cross_entropy(s2, y2) + (1 - a) * tau**2 * kl
        torch.testing.assert_close(distillation_loss(s, t, y, tau, a), ref, **TOL)


def test_distillation_soft_term_is_zero_for_the_teacher_and_its_gradient_scales_as_t2():
    t = logits(4, 7)
    y = torch.zeros(4, dtype=torch.long)
    assert distillation_loss(t.clone(), t, y, 3.0, 0.0).abs() < 1e-15
    norms = []
    for tau in (5.0, 10.0, 20.0):
        s = logits(4, 7, seed=5).requires_grad_(True)
        distillation_loss(s, t, y, tau, 0.0).backward()
        norms.append(s.grad.norm().item())
    # with the T^2 factor the gradient tends to a constant (the logit-matching limit);
    # without it, it would fall as 1 / T^2
    assert abs(norms[2] / norms[1] - 1) < 0.05 and abs(norms[1] / norms[0] - 1) < 0.2
    s = logits(4, 7, seed=5).requires_grad_(True)
    distillation_loss(s, t, y, 2.0, 0.5).backward()
    assert s.grad is not None


def test_distillation_teacher_gets_no_gradient():
    s = logits(2, 5).requires_grad_(True)
    t = logits(2, 5, seed=1).requires_grad_(True)
    distillation_loss(s, t, torch.tensor([1, 2]), 2.0, 0.5).backward()
    assert t.grad is None and s.grad is not None


# ------------------------------------------------------------------------------ unstructured
def test_magnitude_mask_equals_torch_l1_unstructured():
    w = logits(12, 10)
    for p in (0.0, 0.1, 0.5, 0.93, 1.0):
        ref = prune.L1Unstructured(p).compute_mask(w, torch.ones_like(w))
        assert torch.equal(magnitude_mask(w, p), ref.bool())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_prune_of_a_gpt_equals_torch_prune(scope):
    model, ref = tiny(), tiny()
    names = ("q_proj", "v_proj", "fc", "proj")
    got = magnitude_prune(model, 0.6, names, scope)
    ends = tuple("." + t for t in names)  # "proj" names mlp.proj, not k_proj
    layers = [m for n, m in ref.named_modules() if isinstance(m, nn.Linear) and n.endswith(ends)]
    if scope == "layer":
        for m in layers:
            prune.l1_unstructured(m, "weight", 0.6)
    else:
        prune.global_unstructured(
            [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=0.6
        )
    for m in layers:
        prune.remove(m, "weight")
    theirs = dict(ref.named_parameters())
    for n, a in model.named_parameters():
        assert torch.equal(a, theirs[n]), n
    n_all = sum(m.weight.numel() for m in layers)
    assert abs(got - round(0.6 * n_all) / n_all) < 0.01
    assert weight_sparsity(model, names) == got


def test_weight_sparsity_counts_only_the_targeted_weights():
    model = tiny()
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight[:4] = 0
    assert weight_sparsity(model, ["blocks.0.mlp.fc"]) == 4 / 64
    assert weight_sparsity(model) == 4 * 16 / sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if n.startswith("blocks.") and isinstance(m, nn.Linear)
    )


# ------------------------------------------------------------------------------ structured
def test_prune_heads_equals_zeroing_the_heads_outputs():
    model, ref = tiny(), tiny()
    x = ids()
    n = prune_heads(model, [(0, 1), (1, 3), (1, 0)])
    assert n == 3 * 4 * (4 * 16)  # per head: 4 rows of W_Q, W_K, W_V and 4 columns of out

    def zero(cols):
        def hook(module, args):
            h = args[0].clone()
            for c in cols:
                h[..., c * 4 : (c + 1) * 4] = 0
            return (h,)

        return hook

    ref.blocks[0].attn.out_proj.register_forward_pre_hook(zero([1]))
    ref.blocks[1].attn.out_proj.register_forward_pre_hook(zero([3, 0]))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], ref(x)[0], **TOL)
        assert (model(x)[0] - tiny()(x)[0]).abs().max() > 1e-3


def test_prune_all_heads_of_a_layer_removes_the_attention():
    model = tiny()
    prune_heads(model, [(0, h) for h in range(4)])
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(
        model.blocks[0].attn(x), model.blocks[0].attn.out_proj.bias.expand(2, 5, 16), **TOL
    )


def test_prune_neurons_equals_a_smaller_dense_ffn():
    model = tiny()
    full = copy.deepcopy(model)
    scores = neuron_scores(model)
    assert scores.shape == (2, 64)
    m0 = full.blocks[0].mlp
    ref = m0.fc.weight.norm(dim=1) * m0.proj.weight.norm(dim=0)
    torch.testing.assert_close(scores[0], ref.detach(), **TOL)
    kept = prune_neurons(model, 0.25)
    assert [len(k) for k in kept] == [48, 48]
    x = torch.randn(3, 16, dtype=torch.float64)
    for block, orig, k in zip(model.blocks, full.blocks, kept, strict=True):
        mlp = orig.mlp
        h = F.gelu(F.linear(x, mlp.fc.weight[k], mlp.fc.bias[k]), approximate="tanh")
        small = F.linear(h, mlp.proj.weight[:, k], mlp.proj.bias)
        with torch.no_grad():
            torch.testing.assert_close(block.mlp(x), small, **TOL)
    for s, k in zip(scores, kept, strict=True):
        dropped = sorted(set(range(64)) - set(k.tolist()))
        assert s[dropped].max() <= s[k].min()  # the lowest scores go


def test_prune_neurons_with_swiglu_zeros_gate_and_up():
    model = tiny(activation="swiglu", d_ff=32)
    kept = prune_neurons(model, 0.5)
    mlp = model.blocks[1].mlp
    dropped = sorted(set(range(32)) - set(kept[1].tolist()))
    assert mlp.fc.weight[dropped].abs().max() == 0 and mlp.up.weight[dropped].abs().max() == 0
    assert mlp.proj.weight[:, dropped].abs().max() == 0


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: distillation_loss(logits(2, 5), logits(2, 4), torch.tensor([0, 1])), "same shape"),
        (lambda: distillation_loss(logits(2, 5), logits(2, 5), torch.tensor([0])), "labels"),
        (
            lambda: distillation_loss(logits(2, 5), logits(2, 5), torch.tensor([-100, -100])),
            "no scored",
        ),
        (lambda: distillation_loss(logits(2, 5), logits(2, 5), torch.tensor([0, 1]), 0), "temp"),
        (
            lambda: distillation_loss(logits(2, 5), logits(2, 5), torch.tensor([0, 1]), 1, 2),
            "alpha",
        ),
        (lambda: magnitude_mask(logits(3), 1.5), "sparsity"),
        (lambda: magnitude_prune(tiny(), 0.5, ["nothing"]), "match no"),
        (lambda: magnitude_prune(tiny(), 0.5, scope="row"), "scope"),
        (lambda: prune_heads(tiny(), [(0, 4)]), "heads"),
        (lambda: prune_heads(tiny(), [(2, 0)]), "heads"),
        (lambda: prune_neurons(tiny(), -0.1), "fraction"),
        (lambda: neuron_scores(nn.Linear(2, 2)), "model"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
