"""Tests of llmbook.dpo (Chapter 17): the exact bandit loss and its minimiser, the DPO
training loop on preference pairs, and the zoo's "dpo" task.

The bandit tests are float64 arithmetic: the minimiser of the exact expected DPO loss equals
the KL-regularised optimum pi_ref exp(r / (tau beta)) / Z to 1e-7 (L-BFGS to a gradient of
1e-14). The training tests use a 1-layer GPT with random weights (no zoo)."""

from __future__ import annotations

import copy
import itertools
import math
import types

import pytest
import torch

from llmbook import alignment as al
from llmbook import dpo, zoo
from llmbook.gpt import GPT, GPTConfig
from llmbook.reward import Preferences
from llmbook.train import History, TrainConfig

D = torch.float64


def _bandit(K=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.softmax(torch.randn(K, generator=g, dtype=D), -1)
    r = torch.randn(K, generator=g, dtype=D)
    return ref, r


def _minimise(loss_fn, z0):
    z = z0.clone().requires_grad_()
    opt = torch.optim.LBFGS(
        [z], lr=1, max_iter=1000, tolerance_grad=1e-14, tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = loss_fn(z)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(z.detach(), -1)


# ------------------------------------------------------------------------------ bandit
def test_bandit_loss_equals_a_direct_double_sum():
    ref, r = _bandit()
    z = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=D)
    beta, tau = 0.7, 0.5
    logp, lref = torch.log_softmax(z, -1), torch.log(ref)
    total, norm = 0.0, 0.0
    for i, j in itertools.permutations(range(6), 2):
        h = (logp[i] - lref[i]) - (logp[j] - lref[j])
        p = 1 / (1 + math.exp(-(r[i] - r[j]).item() / tau))
        total += ref[i] * ref[j] * p * -math.log(1 / (1 + math.exp(-beta * h.item())))
        norm += ref[i] * ref[j]
    got = dpo.bandit_dpo_loss(z, ref, r, beta, noise=tau)
    assert got.item() == pytest.approx((2 * total / norm).item(), rel=1e-12)
    assert norm.item() == pytest.approx(1 - (ref**2).sum().item(), rel=1e-12)


@pytest.mark.parametrize(("beta", "tau"), [(0.5, 1.0), (0.2, 0.5), (2.0, 1.0)])
def test_bandit_minimiser_is_the_kl_regularised_optimum(beta, tau):
    ref, r = _bandit(K=7, seed=1)
    learned = _minimise(lambda z: dpo.bandit_dpo_loss(z, ref, r, beta, noise=tau), ref.log())
    target = al.kl_regularised_optimum(ref, r / tau, beta)
    torch.testing.assert_close(learned, target, rtol=0, atol=1e-7)
    assert (target - ref).abs().max() > 0.02  # not the reference: the test can fail
    implicit = al.implicit_rewards(learned.log(), ref.log(), beta)  # r / tau up to a constant
    torch.testing.assert_close(implicit - implicit.mean(), (r - r.mean()) / tau, rtol=0, atol=1e-5)


def test_bandit_loss_gradient_vanishes_at_the_optimum_only():
    ref, r = _bandit(K=5, seed=2)
    beta = 0.4
    for z, zero in ((al.kl_regularised_optimum(ref, r, beta).log(), True), (ref.log(), False)):
        z = z.clone().requires_grad_()
        dpo.bandit_dpo_loss(z, ref, r, beta).backward()
        assert (z.grad.abs().max() < 1e-12) == zero


def test_deterministic_labels_have_no_minimiser():
    """noise=0: the loss keeps falling as the policy concentrates on the best response."""
    ref, r = _bandit(K=5, seed=4)
    best = int(r.argmax())
    z = ref.log().clone()
    losses = []
    for scale in (0.0, 5.0, 50.0, 500.0):
        zz = z + scale * (r - r.mean())
        losses.append(dpo.bandit_dpo_loss(zz, ref, r, 0.5, noise=0.0).item())
        p = torch.softmax(zz, -1)
    assert losses == sorted(losses, reverse=True) and losses[-1] < 1e-4
    assert p[best] > 0.99


def test_bandit_variants_and_dtype():
    ref, r = _bandit()
    z = ref.log()
    for lt in ("sigmoid", "ipo", "hinge"):
        assert torch.isfinite(dpo.bandit_dpo_loss(z, ref, r, 0.3, loss_type=lt))
    # at the reference, h = 0 on every pair: sigmoid log 2, hinge 1, IPO 1 / (2 beta)^2
    assert dpo.bandit_dpo_loss(z, ref, r, 0.3).item() == pytest.approx(math.log(2))
    assert dpo.bandit_dpo_loss(z, ref, r, 0.3, loss_type="hinge").item() == pytest.approx(1.0)
    ipo = dpo.bandit_dpo_loss(z, ref, r, 0.25, loss_type="ipo").item()
    assert ipo == pytest.approx(4.0)
    assert dpo.bandit_dpo_loss(z.float(), ref, r, 0.3).dtype == torch.float32


# ---------------------------------------------------------------------------- training
def _gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=23, block_size=12, n_layer=1, n_head=2, d_model=16))


def _prefs(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randint(0, 23, (n, 10), generator=g)
    rejected = chosen.clone()
    rejected[:, 4:] = torch.randint(0, 23, (n, 6), generator=g)  # the same prompts
    mask = torch.zeros(n, 10)
    mask[:, 4:] = 1
    rc, rr = torch.ones(n, dtype=D), torch.zeros(n, dtype=D)
    return Preferences(chosen, rejected, mask, rc, rr)


def _cfg(**kw):
    base = dict(max_steps=30, batch_size=8, lr=3e-3, min_lr=3e-3, warmup_steps=0,
                weight_decay=0.0, grad_clip=1.0, block_size=12)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_reference_logprobs_equal_sequence_logprobs_in_any_batch_size():
    ref, prefs = _gpt(), _prefs()
    ref.eval()
    want = al.sequence_logprobs(ref(prefs.chosen)[0], prefs.chosen, prefs.response_mask)
    for bs in (1, 5, 256):
        c, r = dpo.reference_logprobs(ref, prefs, batch_size=bs)
        torch.testing.assert_close(c, want.detach(), rtol=0, atol=1e-5)
        assert r.shape == (24,)


def test_dpo_train_learns_the_pairs_and_records_its_curves():
    ref = _gpt()
    pol = copy.deepcopy(ref)
    prefs = _prefs()
    hist = dpo.dpo_train(pol, ref, prefs, _cfg(), beta=0.5)
    assert hist.steps == list(range(1, 31))
    assert hist.losses[0] == pytest.approx(math.log(2), abs=1e-5)  # the policy starts at ref
    assert hist.margins[0] == pytest.approx(0.0, abs=1e-5)
    assert hist.losses[-1] < 0.2 and hist.accuracies[-1] == 1.0
    assert hist.margins[-1] > 1.0
    # margin = beta (chosen - rejected log-ratios), step by step
    for m, c, r in zip(hist.margins, hist.chosen_logratios, hist.rejected_logratios, strict=True):
        assert m == pytest.approx(0.5 * (c - r), rel=1e-4, abs=1e-6)
    # the recorded last loss is that of the last batch before the step; recompute the state
    c, r = dpo.reference_logprobs(pol, prefs)
    rc, rr = dpo.reference_logprobs(ref, prefs)
    assert al.preference_accuracy(c - rc, r - rr) == 1.0
    assert not pol.training
    fresh = _gpt().state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in ref.state_dict().items())  # ref untouched


def test_dpo_train_is_deterministic_and_seeded():
    prefs = _prefs()
    out = []
    for seed in (0, 0, 1):
        ref = _gpt()
        pol = copy.deepcopy(ref)
        out.append(dpo.dpo_train(pol, ref, prefs, _cfg(max_steps=5, seed=seed), beta=0.1).losses)
    assert out[0] == out[1] and out[0] != out[2]


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_train_variants_reduce_their_loss(loss_type):
    ref = _gpt()
    pol = copy.deepcopy(ref)
    hist = dpo.dpo_train(pol, ref, _prefs(), _cfg(), beta=0.5, loss_type=loss_type)
    assert hist.losses[-1] < 0.5 * hist.losses[0]


def test_dpo_train_first_loss_equals_dpo_loss_of_the_batch():
    """One step with a batch of all pairs: the recorded loss is dpo_loss on the full data."""
    ref, prefs = _gpt(), _prefs(n=8)
    pol = copy.deepcopy(ref)
    with torch.no_grad():  # perturb the policy so the loss is not log 2
        for p in pol.parameters():
            p.add_(0.05 * torch.randn_like(p))
    c, r = dpo.reference_logprobs(pol, prefs)
    rc, rr = dpo.reference_logprobs(ref, prefs)
    want = al.dpo_loss(c, r, rc, rr, 0.3).item()
    hist = dpo.dpo_train(pol, ref, prefs, _cfg(max_steps=1, batch_size=8), beta=0.3)
    assert hist.losses[0] == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------------- zoo
def test_zoo_dpo_returns_a_model_of_the_base_config_and_leaves_the_base_alone(monkeypatch):
    from llmbook import reward

    base_model = _gpt()
    before = {k: v.clone() for k, v in base_model.state_dict().items()}
    prefs = _prefs()
    monkeypatch.setattr(dpo, "task_prompts", lambda *a, **k: torch.zeros(4, 4, dtype=torch.long))
    monkeypatch.setattr(dpo, "preference_pairs", lambda *a, **k: prefs)
    monkeypatch.setattr(dpo, "genre_lexicon", lambda: {"a": 1.0})
    recipe = types.SimpleNamespace(
        task_args={"beta": 0.5, "n_prompts": 4},
        train_config=lambda: _cfg(max_steps=3),
    )
    base = types.SimpleNamespace(model=base_model, tokenizer=None)
    model, history, metrics = dpo.zoo_dpo(recipe, base, torch.device("cpu"), False)
    assert isinstance(history, History) and history.steps == [1, 2, 3]
    assert model.config == base_model.config and model is not base_model
    assert all(torch.equal(v, before[k]) for k, v in base_model.state_dict().items())
    assert metrics["n_pairs"] == 24 and len(metrics["dpo_margins"]) == 3
    assert reward.PROMPT_TOKENS == 8
    recipe.task_args = {"beta": 0.5, "n_prompts": 4, "lr": 1}
    with pytest.raises(ValueError, match="unknown keys"):
        dpo.zoo_dpo(recipe, base, torch.device("cpu"), False)


def test_dpo_recipes_are_registered_with_the_base_data():
    names = [n for n in zoo.RECIPES if n.startswith("comedy-dpo-")]
    assert len(names) >= 3
    base = zoo.get_recipe("shakespeare-bpe-small")
    betas = set()
    for n in names:
        r = zoo.get_recipe(n)
        assert r.task == "dpo" and r.base == base.name
        assert r.data_spec() == base.data_spec() and r.model_config() == base.model_config()
        assert n == f"comedy-dpo-beta-{r.task_args['beta']}"
        betas.add(r.task_args["beta"])
    assert len(betas) == len(names)
    assert zoo.DERIVED_TASKS["dpo"] == "llmbook.dpo:zoo_dpo"


# --------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    ref, r = _bandit()
    with pytest.raises(ValueError, match="beta"):
        dpo.bandit_dpo_loss(ref.log(), ref, r, 0.0)
    with pytest.raises(ValueError, match="ref_probs"):
        dpo.bandit_dpo_loss(ref.log(), ref * 2, r, 0.5)
    with pytest.raises(ValueError, match="logits and rewards"):
        dpo.bandit_dpo_loss(ref.log()[:3], ref, r, 0.5)
    with pytest.raises(ValueError, match="noise"):
        dpo.bandit_dpo_loss(ref.log(), ref, r, 0.5, noise=-1)
    pol, prefs = _gpt(), _prefs()
    with pytest.raises(ValueError, match="different models"):
        dpo.dpo_train(pol, pol, prefs, _cfg())
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_train(pol, _gpt(), prefs, _cfg(), beta=-1)
    with pytest.raises(ValueError, match="precision"):
        dpo.dpo_train(pol, _gpt(), prefs, _cfg(precision="bf16"))
    with pytest.raises(ValueError, match="prefs"):
        dpo.dpo_train(pol, _gpt(), "pairs", _cfg())
