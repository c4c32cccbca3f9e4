"""Tests of llmbook.rlhf: the reward model's fit against scipy, the PPO rollout's targets
against their definitions, the PPO and GRPO loops on a tiny GPT, the critique-and-revise
loop, and the zoo trainers (on a tiny base, no zoo needed). Float64 fits at 1e-6."""

import copy

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from llmbook import alignment as al
from llmbook import rlhf
from llmbook.corpus import play_text
from llmbook.gpt import GPT, GPTConfig
from llmbook.reward import LexiconReward, genre_lexicon, words
from llmbook.tokenizer import BPETokenizer
from llmbook.zoo import Recipe, ZooModel


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(play_text("twelfth-night")[:20_000], 300)


def _gpt(seed=0, block=16):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=300, block_size=block, n_layer=1, n_head=2, d_model=16)
    return GPT(cfg)


def _reward():
    return LexiconReward({"sir": 1.0, "the": 0.5, "and": -0.5, "a": 0.25})


# ------------------------------------------------------------------------ reward model
def test_the_lexicon_reward_is_linear_in_word_frequencies():
    lex = genre_lexicon()
    texts = ["Master, master! a merry chain.", "O gods, the noble general", "", "sing"]
    f = rlhf.word_frequencies(texts, list(lex))
    s = torch.tensor(list(lex.values()), dtype=torch.float64)
    assert torch.allclose(f @ s, LexiconReward(lex)(texts), atol=1e-12, rtol=0)
    assert f[0, list(lex).index("master")] == pytest.approx(2 / 5)
    assert f[2].abs().sum() == 0  # no words, no features


def test_bradley_terry_fit_equals_scipy_and_recovers_the_reward():
    g = torch.Generator().manual_seed(0)
    n, d, tau = 4000, 6, 0.5
    theta_true = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.rand(n, d, generator=g, dtype=torch.float64)
    b = torch.rand(n, d, generator=g, dtype=torch.float64)
    p = torch.sigmoid((a - b) @ theta_true / tau)
    a_wins = (torch.rand(n, generator=g, dtype=torch.float64) < p)[:, None]
    chosen, rejected = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    l2 = 1e-3
    theta = rlhf.fit_bradley_terry(chosen, rejected, l2=l2)
    diff = (chosen - rejected).numpy()

    def objective(t):
        z = diff @ t
        grad = -diff.T @ (1 / (1 + np.exp(z))) / n + l2 * t
        return np.mean(np.logaddexp(0, -z)) + 0.5 * l2 * t @ t, grad

    ref = minimize(objective, np.zeros(d), jac=True, method="L-BFGS-B", tol=1e-14).x
    assert np.allclose(theta.numpy(), ref, atol=1e-6)
    # the maximum-likelihood weights estimate theta_true / tau
    assert torch.corrcoef(torch.stack([theta, theta_true]))[0, 1] > 0.98
    assert (theta / (theta_true / tau)).median().item() == pytest.approx(1.0, abs=0.15)


# ---------------------------------------------------------------------------- helpers
def test_hidden_states_are_what_the_head_reads():
    model = _gpt()
    ids = torch.randint(0, 300, (2, 7))
    logits, h = rlhf.hidden_states(model, ids)
    assert torch.equal(logits, model(ids)[0])
    assert torch.allclose(model.lm_head(h), logits, atol=1e-6)
    assert h.shape == (2, 7, 16)


def test_value_head_starts_at_zero():
    head = rlhf.ValueHead(16, 8)
    assert torch.equal(head(torch.randn(3, 5, 16)), torch.zeros(3, 5))


# ------------------------------------------------------------------------------- PPO
def test_rollout_targets_follow_their_definitions(tok):
    policy, reference = _gpt(0), _gpt(1)
    head = rlhf.ValueHead(16)
    torch.nn.init.normal_(head.net[2].weight)  # non-zero values
    cfg = rlhf.PPOConfig(n_new=6, beta=0.1, lam=0.9)
    prompts = torch.randint(0, 300, (4, 3))
    gen = torch.Generator().manual_seed(0)
    ro = rlhf.ppo_rollout(policy, reference, head, tok, _reward(), prompts, cfg, generator=gen)
    m = ro.mask[:, 1:]
    assert ro.ids.shape == (4, 9) and torch.equal(ro.ids[:, :3], prompts)
    texts = [tok.decode(r[3:].tolist()) for r in ro.ids]
    assert ro.texts == texts
    assert torch.allclose(ro.scores, _reward()(texts).float())
    want = al.token_logprobs(policy(ro.ids)[0], ro.ids, ro.mask)
    assert torch.allclose(ro.logprobs, want, atol=1e-6)
    want_ref = al.token_logprobs(reference(ro.ids)[0], ro.ids, ro.mask)
    assert torch.allclose(ro.ref_logprobs, want_ref, atol=1e-6)
    # the rewards of a response add up to its score minus beta times its k1 KL
    total = ro.scores - 0.1 * ((ro.logprobs - ro.ref_logprobs) * m).sum(-1)
    assert torch.allclose(ro.rewards.sum(-1), total, atol=1e-5)
    assert torch.allclose(ro.kl, (ro.logprobs - ro.ref_logprobs).sum(-1))
    # values: the head on the reference's features at the predicting position
    _, h = rlhf.hidden_states(reference, ro.ids)
    assert torch.allclose(ro.values, head(h[:, :-1]).detach() * m, atol=1e-6)
    adv, ret = al.gae(ro.rewards, ro.values, m, 1.0, 0.9)
    assert torch.allclose(ro.advantages, adv) and torch.allclose(ro.returns, ret)


def test_ppo_update_moves_the_policy_toward_positive_advantages(tok):
    policy, reference = _gpt(0), _gpt(0)
    cfg = rlhf.PPOConfig(n_new=6, beta=0.0, epochs=1, minibatches=1, lr=1e-2)
    head = rlhf.ValueHead(16)
    opt = torch.optim.Adam(list(policy.parameters()) + list(head.parameters()), lr=1e-2)
    prompts = torch.randint(0, 300, (8, 3))
    torch.manual_seed(0)
    ro = rlhf.ppo_rollout(policy, reference, head, tok, _reward(), prompts, cfg)
    ro.advantages = torch.randn(ro.advantages.shape) * ro.mask[:, 1:]  # varied advantages
    before = copy.deepcopy(policy)
    stats = rlhf.ppo_update(policy, head, ro, opt, cfg)
    assert set(stats) == {"policy_loss", "value_loss", "clip_fraction", "approx_kl"}
    # one step from the sampling policy: ratio 1, loss = -mean(whitened advantage) = 0
    assert stats["policy_loss"] == pytest.approx(0.0, abs=1e-6)
    assert stats["clip_fraction"] == 0.0 and stats["approx_kl"] == pytest.approx(0.0, abs=1e-9)
    m = ro.mask[:, 1:]
    adv = al.masked_whiten(ro.advantages, m)
    new = al.token_logprobs(policy(ro.ids)[0], ro.ids, ro.mask)
    old = al.token_logprobs(before(ro.ids)[0], ro.ids, ro.mask)
    assert ((new - old) * adv * m).sum() > 0  # the surrogate improved


def test_train_ppo_logs_every_iteration_and_adapts_beta(tok):
    policy, reference = _gpt(0), _gpt(0)
    prompts = torch.randint(0, 300, (10, 3))
    cfg = rlhf.PPOConfig(iterations=3, batch_size=4, n_new=5, beta=0.1, kl_target=1e-6)
    torch.manual_seed(0)
    head, log = rlhf.train_ppo(policy, reference, tok, _reward(), prompts, cfg)
    assert isinstance(head, rlhf.ValueHead)
    assert all(len(v) == 3 for v in log.values())
    assert log["kl"][0] == pytest.approx(0.0, abs=1e-5)  # the first rollout is the reference's
    assert log["beta"][0] == 0.1 and log["beta"][2] > log["beta"][1]  # KL above the target
    assert log["elapsed"] == sorted(log["elapsed"])


def test_train_grpo_needs_no_value_model(tok):
    policy, reference = _gpt(0), _gpt(1)  # the k3 penalty pulls the policy
    prompts = torch.randint(0, 300, (10, 3))
    cfg = rlhf.GRPOConfig(iterations=2, prompts_per_step=2, group_size=3, n_new=5)
    torch.manual_seed(0)
    before = copy.deepcopy(policy.state_dict())
    log = rlhf.train_grpo(policy, reference, tok, _reward(), prompts, cfg)
    assert all(len(v) == 2 for v in log.values())
    assert log["kl"][0] != 0.0
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_prompt_batches_are_passes_in_random_order():
    prompts = torch.arange(10)[:, None]
    torch.manual_seed(0)
    batches = rlhf._prompt_batches(prompts, 4, 5)
    assert [len(b) for b in batches] == [4] * 5
    first_pass = torch.cat(batches)[:10].flatten().sort().values
    assert torch.equal(first_pass, torch.arange(10))


# -------------------------------------------------------------------------- zoo tasks
@pytest.mark.parametrize("task", ["ppo", "grpo"])
def test_zoo_trainers_return_a_policy_of_the_recipe(task, tok):
    base_model = _gpt(0, block=32)
    model = {k: getattr(base_model.config, k) for k in ("block_size", "n_layer", "n_head")}
    model["d_model"] = 16
    recipe = Recipe(
        name=f"test-{task}",
        description="",
        model=model,
        train=dict(max_steps=2, batch_size=2, lr=1e-4, warmup_steps=0, seed=0),
        vocab_size=300,
        task=task,
        base="shakespeare-bpe-tiny",
        task_args={"n_new": 4, "n_prompts": 6} | ({"group_size": 2} if task == "grpo" else {}),
    )
    base = ZooModel(base_model, tok, recipe, __import__("llmbook").train.History())
    fn = rlhf.zoo_ppo if task == "ppo" else rlhf.zoo_grpo
    before = copy.deepcopy(base_model.state_dict())
    policy, history, metrics = fn(recipe, base, torch.device("cpu"), False)
    assert policy.config == recipe.model_config()
    assert all(torch.equal(before[k], v) for k, v in base_model.state_dict().items())
    assert history.steps == [1, 2] and len(metrics["reward"]) == len(metrics["kl"]) == 2
    bad = Recipe(**{**recipe.__dict__, "task_args": {"nonsense": 1}})
    with pytest.raises(ValueError, match="task_args has unknown fields"):
        fn(bad, base, torch.device("cpu"), False)


# -------------------------------------------------------------- critique and revise
def test_critic_flags_banned_and_repeated_words_in_order():
    rules = [rlhf.banned_words_rule("tragic", ["death", "gods"]), rlhf.repetition_rule()]
    found = rlhf.critique("O gods, the the death!", rules)
    assert [(v.rule, v.word) for v in found] == [
        ("tragic", "gods"),
        ("repetition", "the"),
        ("tragic", "death"),
    ]
    assert found[0].start == 2 and found[1].start == 12
    assert rlhf.critique("a merry jest", rules) == []


def test_critique_and_revise_keeps_clean_rows_and_prefixes(tok):
    policy = _gpt(0)
    torch.manual_seed(0)
    ids = torch.randint(0, 300, (12, 14))
    rules = [rlhf.banned_words_rule("banned", ["the", "a", "and", "i", "you"])]
    dirty = [bool(rlhf.critique(tok.decode(r[4:].tolist()), rules)) for r in ids]
    gen = torch.Generator().manual_seed(0)
    out, rates = rlhf.critique_and_revise(policy, tok, ids, 4, rules, rounds=2, generator=gen)
    assert len(rates) == 3 and rates[0] == pytest.approx(sum(dirty) / 12)
    for row in range(12):
        if not dirty[row]:
            assert torch.equal(out[row], ids[row])
        else:
            text = tok.decode(ids[row, 4:].tolist())
            first = rlhf.critique(text, rules)[0].start
            k = rlhf._token_at(tok, ids[row, 4:].tolist(), first)
            assert torch.equal(out[row, : 4 + k], ids[row, : 4 + k])
    _, none = rlhf.critique_and_revise(policy, tok, ids, 4, rules, rounds=0)
    assert none == rates[:1]


def test_words_of_the_critic_are_the_rewards_words():
    text = "Is't so, MASTER Ford? 'Tis well."
    assert [m.group().lower() for m in rlhf._WORD.finditer(text)] == words(text)
