"""Tests of llmbook.alignment: log-probabilities of responses, reward model, GAE, PPO, KL
estimators, GRPO and DPO (Chapters 16 and 17).

Equality with Hugging Face ``trl`` 1.16 (float64): the DPO loss of ``DPOTrainer._compute_loss``
(sigmoid, IPO, hinge) and the GRPO loss of ``GRPOTrainer._compute_loss``, each run on an object
built with ``object.__new__`` (no ``__init__``: no model, dataset or accelerator is created)
with the attributes the method reads set by hand and the model's forward replaced by a stub
that returns the per-token log-probabilities; GRPO's group advantages against the lines of
``GRPOTrainer._generate_and_score_completions`` that compute them, rebuilt around ``trl``'s own
``nanstd`` (that method generates text, so it is not called); ``selective_log_softmax`` and
``entropy_from_logits`` of ``trl.trainer.utils`` directly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from llmbook import alignment as al
from llmbook.gpt import GPT, GPTConfig
from llmbook.information import kl_divergence

D = torch.float64


def ragged(B: int = 4, T: int = 9, V: int = 7, seed: int = 0):
    """Random float64 logits, ids and a response mask: prompts of 1..3 tokens, responses of
    1.. tokens, then right padding."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=D) * 2
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.zeros(B, T)
    for b in range(B):
        start = 1 + b % 3
        end = T - (b % 2) * 2
        mask[b, start:end] = 1
    return logits, ids, mask


# ------------------------------------------------------------------- log-probabilities


def minimise(theta, loss_fn):
    """Minimise loss_fn() over the leaf tensor theta with L-BFGS to machine precision."""
    opt = torch.optim.LBFGS(
        [theta],
        lr=1,
        max_iter=500,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def test_token_logprobs_read_token_t_plus_one_from_position_t():
    logits, ids, mask = ragged()
    out = al.token_logprobs(logits, ids, mask)
    assert out.shape == (4, 8)
    for b in range(4):
        for t in range(8):
            want = torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]] if mask[b, t + 1] else 0.0
            assert out[b, t].item() == pytest.approx(float(want), abs=1e-12)
    seq = al.sequence_logprobs(logits, ids, mask)
    torch.testing.assert_close(seq, out.sum(-1), rtol=0, atol=1e-12)
    mean = al.sequence_logprobs(logits, ids, mask, average=True)
    torch.testing.assert_close(mean, seq / mask[:, 1:].sum(-1).to(D), rtol=0, atol=1e-12)


def test_sequence_logprob_of_the_books_gpt_is_minus_its_loss_times_length():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8)
    model = GPT(cfg).double().eval()
    ids = torch.randint(0, 11, (2, 8))
    logits, _ = model(ids)
    _, loss = model(ids[:, :-1], ids[:, 1:])  # mean cross-entropy of tokens 1..T-1
    mask = torch.ones(2, 8)
    mask[:, 0] = 0
    total = al.sequence_logprobs(logits, ids, mask).sum()
    assert total.item() == pytest.approx(-loss.item() * 2 * 7, rel=1e-12)


def test_equal_to_trls_selective_log_softmax_and_entropy():
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    logits, ids, mask = ragged()
    ours = al.token_logprobs(logits, ids, mask)
    theirs = selective_log_softmax(logits[:, :-1], ids[:, 1:]) * mask[:, 1:]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        al.token_entropy(logits), entropy_from_logits(logits), rtol=0, atol=1e-12
    )


def test_token_entropy_known_values():
    V = 8
    h = al.token_entropy(
        torch.stack([torch.zeros(V, dtype=D), torch.tensor([50.0] + [0] * 7, dtype=D)])
    )
    assert h[0].item() == pytest.approx(math.log(V), abs=1e-12)
    assert 0 <= h[1].item() < 1e-18
    masked = torch.tensor([0.0, 0.0, -math.inf, -math.inf], dtype=D)  # top-k-style -inf
    assert al.token_entropy(masked).item() == pytest.approx(math.log(2), abs=1e-15)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        al.token_entropy(torch.tensor([0.0, math.nan]))


def test_misaligned_logits_and_labels_are_refused_with_the_reason():
    logits, ids, mask = ragged()
    with pytest.raises(ValueError, match="misaligned by one"):
        al.token_logprobs(logits[:, :-1], ids, mask)  # already shifted
    with pytest.raises(ValueError, match="misaligned by one"):
        al.token_logprobs(logits, ids[:, 1:], mask[:, 1:])
    with pytest.raises(ValueError, match=r"response_mask\[:, 0\]"):
        al.token_logprobs(logits, ids, torch.ones_like(mask))
    empty = mask.clone()
    empty[2] = 0
    with pytest.raises(ValueError, match="response_mask is empty in row 2"):
        al.sequence_logprobs(logits, ids, empty)


# ------------------------------------------------------------------ masked reductions
def test_masked_reductions():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 5.0]], dtype=D)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert al.masked_sum(x, m).item() == 11.0
    assert al.masked_mean(x, m).item() == 11.0 / 4
    torch.testing.assert_close(al.masked_mean(x, m, dim=1), torch.tensor([1.5, 4.0], dtype=D))
    torch.testing.assert_close(
        al.masked_sum(x, m.bool(), dim=0), torch.tensor([4, 2, 5.0], dtype=D)
    )
    w = al.masked_whiten(x, m, eps=0.0)
    kept = w[m.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-12)  # Bessel, like the definition
    assert w[0, 2] == 0 and w[1, 1] == 0
    w2 = al.masked_whiten(x, m, shift_mean=False, eps=0.0)
    assert w2[m.bool()].mean().item() == pytest.approx(11.0 / 4, abs=1e-12)
    with pytest.raises(ValueError, match="mask is empty"):
        al.masked_mean(x, torch.zeros_like(m))
    with pytest.raises(ValueError, match="dim=1"):
        al.masked_mean(x, torch.tensor([[1, 1, 0], [0, 0, 0]]), dim=1)
    with pytest.raises(ValueError, match="shape"):
        al.masked_sum(x, m[:, :2])


# --------------------------------------------------------------------------- reward model
def test_bradley_terry_loss_and_accuracy():
    c = torch.tensor([2.0, 0.0, -1.0], dtype=D)
    r = torch.tensor([1.0, 0.0, 1.0], dtype=D)
    want = -F.logsigmoid(c - r).mean()  # trl RewardTrainer.compute_loss
    assert al.bradley_terry_loss(c, r).item() == pytest.approx(want.item(), abs=1e-15)
    assert al.bradley_terry_loss(c, r).item() == pytest.approx(
        (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(2))) / 3, abs=1e-12
    )
    m = torch.tensor([0.5, 0.0, 1.0], dtype=D)
    assert al.bradley_terry_loss(c, r, m).item() == pytest.approx(
        -F.logsigmoid(c - r - m).mean().item(), abs=1e-15
    )
    assert al.bradley_terry_loss(c, r, 0.5).item() > al.bradley_terry_loss(c, r).item()
    assert al.preference_accuracy(c, r) == pytest.approx(1 / 3)  # the tie counts as wrong


def trl_reward_loss_and_accuracy(c, r, margin=None):
    """RewardTrainer.compute_loss on an object built without __init__, the reward model
    replaced by a stub returning the scores (2B, 1): B chosen rows, then B rejected."""
    from trl.trainer.reward_trainer import RewardTrainer

    t = object.__new__(RewardTrainer)
    t.model = SimpleNamespace(training=False)
    t.args = SimpleNamespace(center_rewards_coefficient=None)
    t.accelerator = SimpleNamespace(gather_for_metrics=lambda x: x, gather=lambda x: x)
    t._metrics, t._total_train_tokens = defaultdict(lambda: defaultdict(list)), 0
    scores = torch.cat([c, r])[:, None]
    inputs = {"input_ids": torch.zeros(len(scores), 2, dtype=torch.long)}
    if margin is not None:
        inputs["margin"] = margin
    loss = t.compute_loss(lambda **kw: SimpleNamespace(logits=scores), inputs)
    return loss.item(), t._metrics["eval"]["accuracy"][-1]


def test_bradley_terry_loss_and_accuracy_equal_trls_reward_trainer():
    g = torch.Generator().manual_seed(12)
    c, r = torch.randn(8, generator=g, dtype=D), torch.randn(8, generator=g, dtype=D)
    m = torch.rand(8, generator=g, dtype=D)
    loss, acc = trl_reward_loss_and_accuracy(c, r)
    assert al.bradley_terry_loss(c, r).item() == pytest.approx(loss, rel=1e-12)
    assert al.preference_accuracy(c, r) == pytest.approx(acc, abs=1e-7)  # trl: float32 mean
    loss_m, _ = trl_reward_loss_and_accuracy(c, r, m)
    assert al.bradley_terry_loss(c, r, m).item() == pytest.approx(loss_m, rel=1e-12)


def test_bradley_terry_fit_recovers_rewards_up_to_a_constant():
    """The MLE on exact preference probabilities returns the true rewards (up to a shift)."""
    r_true = torch.tensor([0.0, 1.0, -0.5, 2.0], dtype=D)
    i, j = torch.triu_indices(4, 4, 1)
    p = torch.sigmoid(r_true[i] - r_true[j])
    theta = torch.zeros(4, dtype=D, requires_grad=True)

    def expected_loss():  # pair (i, j) is labelled i > j with probability p
        return sum(
            p[k] * al.bradley_terry_loss(theta[i[k]], theta[j[k]])
            + (1 - p[k]) * al.bradley_terry_loss(theta[j[k]], theta[i[k]])
            for k in range(len(p))
        )

    minimise(theta, expected_loss)
    fitted = theta.detach() - theta.detach()[0]
    torch.testing.assert_close(fitted, r_true, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------- GAE
def gae_by_definition(rewards, values, mask, gamma, lam):
    """The closed-form sum A_t = sum_l (gamma lam)^l delta_{t+l}, one position at a time."""
    B, n = rewards.shape
    adv = torch.zeros_like(rewards)
    for b in range(B):
        idx = [t for t in range(n) if mask[b, t]]
        end = idx[-1]
        for t in idx:
            total = 0.0
            for k in range(t, end + 1):
                v_next = values[b, k + 1] if k < end else 0.0
                delta = rewards[b, k] + gamma * v_next - values[b, k]
                total += (gamma * lam) ** (k - t) * delta
            adv[b, t] = total
    return adv


@pytest.mark.parametrize(
    "gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0), (0.0, 0.5)]
)
def test_gae_equals_its_closed_form_sum(gamma, lam):
    g = torch.Generator().manual_seed(1)
    rewards = torch.randn(3, 7, generator=g, dtype=D)
    values = torch.randn(3, 7, generator=g, dtype=D)
    mask = torch.zeros(3, 7)
    mask[0, 2:] = 1
    mask[1, 1:4] = 1
    mask[2, 3:6] = 1
    adv, ret = al.gae(rewards, values, mask, gamma, lam)
    want = gae_by_definition(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, (want + values) * mask.to(D), rtol=0, atol=1e-12)
    assert torch.all(adv[mask == 0] == 0)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rewards = torch.tensor([[1.0, 0.0, 2.0]], dtype=D)
    values = torch.tensor([[0.3, -1.0, 0.7]], dtype=D)
    _, ret = al.gae(rewards, values, gamma=0.5, lam=1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.5, 1.0, 2.0]], dtype=D))


# ---------------------------------------------------------------------------------- PPO
@pytest.mark.parametrize(
    "ratio,adv,zero_grad",
    [
        (1.1, 1.0, False),  # inside the trust region
        (0.9, -1.0, False),
        (1.5, 1.0, True),  # past 1+eps in the favoured direction: clipped
        (0.5, -1.0, True),  # below 1-eps with a negative advantage: clipped
        (0.5, 1.0, False),  # below 1-eps with a positive advantage: the min keeps rho*A
        (1.5, -1.0, False),  # above 1+eps with a negative advantage: pessimistic, not clipped
    ],
)
def test_ppo_clipped_surrogate_gradient(ratio, adv, zero_grad):
    old = torch.tensor([[-1.0]], dtype=D)
    lp = (old + math.log(ratio)).requires_grad_()
    a = torch.tensor([[adv]], dtype=D)
    loss = al.ppo_policy_loss(lp, old, a, torch.ones(1, 1), clip_eps=0.2)
    loss.backward()
    if zero_grad:
        assert lp.grad.item() == 0.0
        assert loss.item() == pytest.approx(-min(ratio, 1.2) * adv if adv > 0 else -0.8 * adv)
    else:
        assert lp.grad.item() == pytest.approx(-ratio * adv, rel=1e-12)  # d(-rho A)/d log pi
        assert loss.item() == pytest.approx(-ratio * adv, rel=1e-12)


def test_ppo_losses_average_over_masked_tokens_only():
    lp = torch.tensor([[0.0, 0.0, 9.0]], dtype=D)
    adv = torch.tensor([[1.0, 3.0, 100.0]], dtype=D)
    m = torch.tensor([[1, 1, 0]])
    assert al.ppo_policy_loss(lp, lp, adv, m).item() == pytest.approx(-2.0)
    v = torch.tensor([[1.0, 0.0, 0.0]], dtype=D)
    old = torch.tensor([[0.0, 0.0, 0.0]], dtype=D)
    ret = torch.tensor([[2.0, 1.0, 50.0]], dtype=D)
    # token 0: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> max 3.24; token 1: 1
    assert al.ppo_value_loss(v, old, ret, m, 0.2).item() == pytest.approx(0.5 * (3.24 + 1) / 2)


def test_kl_estimators_bias_and_variance_on_categoricals():
    """Exact expectations by enumeration over K outcomes, a ~ pi."""
    g = torch.Generator().manual_seed(3)
    for scale in (0.1, 1.0):
        pi = torch.softmax(torch.randn(6, generator=g, dtype=D), -1)
        ref = torch.softmax(torch.log(pi) + scale * torch.randn(6, generator=g, dtype=D), -1)
        kl = float(kl_divergence(pi, ref))
        ks = al.kl_estimators(torch.log(pi), torch.log(ref))
        mean = {k: float((pi * v).sum()) for k, v in ks.items()}
        var = {k: float((pi * (v - mean[k]) ** 2).sum()) for k, v in ks.items()}
        assert mean["k1"] == pytest.approx(kl, abs=1e-12)  # unbiased
        assert mean["k3"] == pytest.approx(kl, abs=1e-12)  # unbiased
        assert bool((ks["k3"] >= 0).all()) and bool((ks["k2"] >= 0).all())
        assert bool((ks["k1"] < 0).any())  # k1 goes negative on single samples
        assert abs(mean["k2"] - kl) > 1e-3 * kl  # biased
        assert var["k2"] < var["k1"] and var["k3"] < var["k1"]
        if scale == 0.1:  # close policies: k2's bias is third order, small
            assert abs(mean["k2"] - kl) < 0.05 * kl
    # and on samples: k3's sample mean is within 4 standard errors of the exact KL
    a = torch.multinomial(pi, 20000, replacement=True, generator=g)
    k3 = al.kl_estimators(torch.log(pi[a]), torch.log(ref[a]))["k3"]
    assert abs(k3.mean().item() - kl) < 4 * k3.std().item() / math.sqrt(20000)


def test_kl_penalised_rewards_put_the_score_on_the_last_response_token():
    lp = torch.tensor([[-1.0, -2.0, -1.0, 0.0], [-1.0, -1.0, -1.0, -1.0]], dtype=D)
    ref = torch.tensor([[-1.5, -1.0, -1.0, 0.0], [-1.0, -1.0, -1.0, -1.0]], dtype=D)
    m = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    r = al.kl_penalised_rewards(torch.tensor([3.0, -2.0], dtype=D), lp, ref, m, beta=0.1)
    want = torch.tensor([[0.0, 0.1, 3.0, 0.0], [0.0, 0.0, 0.0, -2.0]], dtype=D)
    torch.testing.assert_close(r, want, rtol=0, atol=1e-15)


def test_adaptive_kl_controller_follows_ziegler_et_al():
    c = al.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert c.update(12.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))  # clipped +0.2
    b = c.beta
    assert c.update(6.0, 256) == pytest.approx(b)  # on target: unchanged
    assert c.update(3.0, 256) == pytest.approx(b * (1 - 0.2 * 256 / 10000))  # clipped -0.2
    b = c.beta
    assert c.update(6.6, 100) == pytest.approx(b * (1 + 0.1 * 100 / 10000))  # proportional


# --------------------------------------------------------------------------------- GRPO
def test_group_advantages_match_trls_formula():
    from trl.trainer.utils import nanstd

    g = torch.Generator().manual_seed(4)
    rewards = torch.randn(12, generator=g, dtype=D)
    rewards[8:] = 1.0  # a group with zero spread gets advantage 0
    G = 4
    # the lines of GRPOTrainer._generate_and_score_completions (scale_rewards="group" / "none");
    # trl's nanstd computes Bessel's factor count / (count - 1) in float32 (an int64 division),
    # so its std is float64 up to a relative 1e-8: rtol 1e-7
    mean = rewards.view(-1, G).mean(1).repeat_interleave(G)
    std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G)
    torch.testing.assert_close(
        al.group_advantages(rewards, G), (rewards - mean) / (std + 1e-4), rtol=1e-7, atol=1e-12
    )
    torch.testing.assert_close(
        al.group_advantages(rewards, G, scale=False), rewards - mean, rtol=0, atol=1e-15
    )
    assert torch.all(al.group_advantages(rewards, G)[8:] == 0)
    adv = al.group_advantages(rewards, G, eps=0.0)[:8].view(2, G)
    torch.testing.assert_close(adv.std(1), torch.ones(2, dtype=D))


def trl_grpo_loss(lp, old, ref, adv, mask, eps, beta):
    from trl.trainer.grpo_trainer import GRPOTrainer

    t = object.__new__(GRPOTrainer)  # no __init__: only the attributes _compute_loss reads
    t._get_per_token_logps_and_entropies = lambda *a, **k: (lp, torch.zeros_like(lp), None)
    t.model = SimpleNamespace(training=False)
    t.top_entropy_quantile, t.off_policy_mask_threshold = 1.0, None
    t.importance_sampling_level, t.loss_type, t.beta = "token", "grpo", beta
    t.epsilon_low = t.epsilon_high = eps
    t.args = SimpleNamespace(delta=None, use_bias_correction_kl=False)
    t.use_vllm, t._entropy_bonus_enabled, t.aux_loss_enabled = False, False, False
    t.current_gradient_accumulation_steps = 1
    t.accelerator = SimpleNamespace(reduce=lambda x, reduction: x, gather=lambda x: x)
    t._metrics = defaultdict(lambda: defaultdict(list))
    N, n = lp.shape
    inputs = {
        "prompt_ids": torch.zeros(N, 2, dtype=torch.long),
        "prompt_mask": torch.ones(N, 2, dtype=torch.long),
        "completion_ids": torch.zeros(N, n, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    return t._compute_loss(None, inputs)


@pytest.mark.parametrize("beta", [0.0, 0.04, 0.5])
def test_grpo_loss_equals_trls(beta):
    g = torch.Generator().manual_seed(5)
    N, n = 6, 5
    lp = -torch.rand(N, n, generator=g, dtype=D) * 3
    old = lp + 0.4 * torch.randn(N, n, generator=g, dtype=D)  # many ratios outside [0.8, 1.2]
    ref = lp + 0.3 * torch.randn(N, n, generator=g, dtype=D)
    adv = al.group_advantages(torch.randn(N, generator=g, dtype=D), 3)
    mask = torch.ones(N, n, dtype=torch.long)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    ours = al.grpo_loss(lp, old, ref, adv, mask, clip_eps=0.2, beta=beta)
    theirs = trl_grpo_loss(lp, old, ref, adv, mask, 0.2, beta)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-14)


def test_grpo_loss_against_the_deepseekmath_formula():
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], dtype=D)
    old = torch.tensor([[-1.0, -1.0], [-0.5, -0.5]], dtype=D)
    ref = torch.tensor([[-1.0, -1.5], [-0.5, -1.0]], dtype=D)
    adv = torch.tensor([1.0, -1.0], dtype=D)
    mask = torch.tensor([[1, 1], [1, 0]])
    beta = 0.1
    k3 = lambda a, b: math.exp(b - a) - (b - a) - 1  # noqa: E731
    rho = math.exp(-1)  # second token of completion 0: ratio 0.37 < 0.8, A > 0 -> unclipped
    seq0 = ((1.0 - beta * 0) + (rho * 1.0 - beta * k3(-2.0, -1.5))) / 2
    seq1 = (-1.0 - beta * k3(-0.5, -0.5)) / 1  # its second token (ref -1.0) is masked out
    want = -(seq0 + seq1) / 2
    got = al.grpo_loss(lp, old, ref, adv, mask, 0.2, beta)
    assert got.item() == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------------- DPO
def trl_dpo_loss(pc_tok, pr_tok, rc, rr, mask_c, mask_r, beta, loss_type):
    """DPOTrainer._compute_loss on per-token log-probs (2B, T-1) and precomputed reference sums."""
    from trl.trainer.dpo_trainer import DPOTrainer

    log_probs = torch.cat([pc_tok, pr_tok])
    zeros = torch.zeros_like(log_probs)

    def model(**kwargs):  # the trainer's fused-LM-head forward, returning what it reads
        return SimpleNamespace(
            log_probs=log_probs, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )

    t = object.__new__(DPOTrainer)  # no __init__: only the attributes _compute_loss reads
    t.model = SimpleNamespace(training=False)
    t.accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x
    )
    t.aux_loss_enabled, t.ld_alpha, t.precompute_ref_logps = False, None, True
    t.f_divergence_type, t.loss_types, t.loss_weights = "reverse_kl", [loss_type], [1.0]
    t.beta, t.label_smoothing, t.use_weighting = beta, 0.0, False
    t._metrics, t._total_train_tokens = defaultdict(lambda: defaultdict(list)), 0
    completion_mask = torch.cat([mask_c, mask_r]).long()
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    return t._compute_loss(model, inputs, return_outputs=False)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_loss_equals_trls(loss_type):
    beta = 0.3
    lc, ic, mc = ragged(seed=6)
    lr, ir, mr = ragged(seed=7)
    ref_c, _, _ = ragged(seed=8)
    ref_r, _, _ = ragged(seed=9)
    avg = loss_type == "ipo"  # trl's IPO averages log-ratios over completion tokens
    ours = al.dpo_loss(
        al.sequence_logprobs(lc, ic, mc, average=avg),
        al.sequence_logprobs(lr, ir, mr, average=avg),
        al.sequence_logprobs(ref_c, ic, mc, average=avg),
        al.sequence_logprobs(ref_r, ir, mr, average=avg),
        beta=beta,
        loss_type=loss_type,
    )
    theirs = trl_dpo_loss(
        al.token_logprobs(lc, ic, mc),
        al.token_logprobs(lr, ir, mr),
        al.sequence_logprobs(ref_c, ic, mc),
        al.sequence_logprobs(ref_r, ir, mr),
        mc,
        mr,
        beta,
        loss_type,
    )
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-14)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_dpo_loss_end_to_end_equals_trls_on_a_gpt2():
    """A random GPT-2 (policy) and another (reference) through trl's own fused LM head and
    DPOTrainer._compute_loss, against the same weights in the book's GPT, our shift
    (sequence_logprobs) and dpo_loss. trl's kernel returns float32 log-probabilities, so the
    agreement is float32's: each of the <= 2 B T per-token terms (|log p| <= ~4) is rounded to a
    relative 6e-8, which moves h by < 1e-5 and the loss by less: abs 1e-5."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    cfg = GPT2Config(
        vocab_size=13, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    pol = GPT2LMHeadModel(cfg).double().eval()
    torch.manual_seed(1)
    ref = GPT2LMHeadModel(cfg).double().eval()
    book_pol, book_ref = (GPT.from_hf_gpt2(m).double().eval() for m in (pol, ref))
    for m in (pol, ref):
        add_fused_lm_head(m, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    B, T = 3, 9
    ids = torch.randint(0, 13, (2 * B, T), generator=torch.Generator().manual_seed(2))
    completion = torch.zeros(2 * B, T, dtype=torch.long)  # rows: B chosen, then B rejected
    attention = torch.ones(2 * B, T, dtype=torch.long)
    for b in range(2 * B):
        completion[b, 1 + b % 3 : T - (b % 2) * 2] = 1
        attention[b, T - (b % 2) * 2 :] = 0  # right padding
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}
    for loss_type in ("sigmoid", "ipo", "hinge"):
        t = object.__new__(DPOTrainer)
        t.model, t.ref_model, t.precompute_ref_logps = pol, ref, False
        t.args = SimpleNamespace(gradient_checkpointing_kwargs=None)
        t.accelerator = SimpleNamespace(
            device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x
        )
        t.aux_loss_enabled, t.ld_alpha, t.use_weighting = False, None, False
        t.f_divergence_type, t.loss_types, t.loss_weights = "reverse_kl", [loss_type], [1.0]
        t.beta, t.label_smoothing = 0.3, 0.0
        t._metrics, t._total_train_tokens = defaultdict(lambda: defaultdict(list)), 0
        theirs = t._compute_loss(pol, dict(inputs), return_outputs=False)
        avg = loss_type == "ipo"
        lp = al.sequence_logprobs(book_pol(ids)[0], ids, completion, average=avg)
        lr = al.sequence_logprobs(book_ref(ids)[0], ids, completion, average=avg)
        ours = al.dpo_loss(lp[:B], lp[B:], lr[:B], lr[B:], 0.3, loss_type)
        assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_dpo_variants_known_values():
    z = torch.zeros(1, dtype=D)
    one = torch.ones(1, dtype=D)
    beta = 0.5  # h = 1: chosen up by 1, reference flat
    assert al.dpo_loss(one, z, z, z, beta).item() == pytest.approx(math.log1p(math.exp(-0.5)))
    assert al.dpo_loss(one, z, z, z, beta, "ipo").item() == pytest.approx(0.0)  # h = 1/(2 beta)
    assert al.dpo_loss(one, z, z, z, beta, "hinge").item() == pytest.approx(0.5)
    assert al.dpo_loss(2 * one, z, z, z, beta, "hinge").item() == 0.0
    eps = 0.1  # cDPO: the expected DPO loss when the label is flipped with probability eps
    flip = al.dpo_loss(z, one, z, z, beta)
    want = (1 - eps) * al.dpo_loss(one, z, z, z, beta) + eps * flip
    got = al.dpo_loss(one, z, z, z, beta, label_smoothing=eps)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert al.dpo_loss(z, z, z, z, beta).item() == pytest.approx(math.log(2))
    h = torch.tensor([1.0, 2.0], dtype=D)
    z2 = torch.zeros(2, dtype=D)
    assert al.dpo_loss(h, z2, z2, z2, beta, reduction="none").shape == (2,)
    assert al.implicit_rewards(h, z2, 0.5).tolist() == [0.5, 1.0]


def test_dpo_gradient_is_the_papers_weighting():
    """d L / d log pi(y_w) = -beta sigma(-beta h) = -d L / d log pi(y_l) (Rafailov et al. eq. 7):
    pairs the implicit reward already orders well get little weight."""
    g = torch.Generator().manual_seed(13)
    pc, pr, rc, rr = (torch.randn(5, generator=g, dtype=D) for _ in range(4))
    pc.requires_grad_()
    pr.requires_grad_()
    beta = 0.4
    al.dpo_loss(pc, pr, rc, rr, beta, reduction="sum").backward()
    h = (pc - rc - (pr - rr)).detach()
    torch.testing.assert_close(pc.grad, -beta * torch.sigmoid(-beta * h), rtol=0, atol=1e-15)
    torch.testing.assert_close(pr.grad, -pc.grad, rtol=0, atol=1e-15)


def test_dpo_on_a_bandit_recovers_the_kl_regularised_optimum():
    """Minimising the exact expected DPO loss over Bradley-Terry preferences from r, over a
    tabular policy, gives pi* = pi_ref exp(r / beta) / Z."""
    K, beta = 5, 0.5
    g = torch.Generator().manual_seed(10)
    ref = torch.softmax(torch.randn(K, generator=g, dtype=D), -1)
    r = torch.randn(K, generator=g, dtype=D)
    target = al.kl_regularised_optimum(ref, r, beta)
    i, j = [t.flatten() for t in torch.meshgrid(torch.arange(K), torch.arange(K), indexing="ij")]
    keep = i != j
    i, j = i[keep], j[keep]  # ordered pairs (winner i, loser j), each pair shown uniformly
    p_win = torch.sigmoid(r[i] - r[j])  # Bradley-Terry
    theta = torch.log(ref).clone().requires_grad_()

    def expected_loss():
        logp = torch.log_softmax(theta, -1)
        lref = torch.log(ref)
        losses = al.dpo_loss(logp[i], logp[j], lref[i], lref[j], beta, reduction="none")
        return (p_win * losses).mean()

    minimise(theta, expected_loss)
    learned = torch.softmax(theta.detach(), -1)
    torch.testing.assert_close(learned, target, rtol=0, atol=1e-7)
    assert (target - ref).abs().max() > 0.05  # the optimum is not the reference


def test_kl_regularised_optimum_maximises_the_regularised_reward():
    g = torch.Generator().manual_seed(11)
    ref = torch.softmax(torch.randn(6, generator=g, dtype=D), -1)
    r = torch.randn(6, generator=g, dtype=D)
    beta = 0.7

    def objective(pi):
        return float((pi * r).sum() - beta * kl_divergence(pi, ref))

    best = al.kl_regularised_optimum(ref, r, beta)
    z = float((ref * torch.exp(r / beta)).sum())
    assert objective(best) == pytest.approx(beta * math.log(z), rel=1e-12)
    for _ in range(20):
        other = torch.softmax(torch.log(best) + 0.3 * torch.randn(6, generator=g, dtype=D), -1)
        assert objective(other) < objective(best)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    x = torch.zeros(2, 3, dtype=D)
    m = torch.ones(2, 3)
    z = torch.zeros(3, dtype=D)
    with pytest.raises(ValueError, match="beta"):
        al.dpo_loss(z, z, z, z, beta=0.0)
    with pytest.raises(ValueError, match="policy_chosen_logps and policy_rejected_logps"):
        al.dpo_loss(z, torch.zeros(2, dtype=D), z, z)
    with pytest.raises(ValueError, match="r_chosen and r_rejected"):
        al.bradley_terry_loss(z, torch.zeros(4, dtype=D))
    with pytest.raises(ValueError, match="gamma"):
        al.gae(x, x, m, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        al.gae(x, x, m, lam=-0.1)
    with pytest.raises(ValueError, match="clip_eps"):
        al.ppo_policy_loss(x, x, x, m, clip_eps=0.0)
    with pytest.raises(ValueError, match="mask is empty"):
        al.ppo_policy_loss(x, x, x, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask is empty in row 1"):
        al.grpo_loss(x, x, x, torch.zeros(2, dtype=D), torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="label_smoothing"):
        al.dpo_loss(z, z, z, z, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="finite"):
        al.dpo_loss(z, z, z, torch.full((3,), math.nan, dtype=D))
