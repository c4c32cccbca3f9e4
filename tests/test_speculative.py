"""Tests of llmbook.speculative: speculative sampling samples the target's distribution.

* exact: the branches of the algorithm (draft tokens, accept/reject, the last token) are
  enumerated, each driven through :func:`verify` with uniforms chosen inside the branch,
  and the probabilities of the emitted sequences add up to the target's, to float64
  round-off (1e-12), for context-free distributions and for two small GPTs;
* statistical: real runs of :func:`speculative_generate` on two small random GPTs pass a
  chi-square goodness-of-fit test against the target's exact joint distribution of the
  first two tokens; the generator is seeded, so the test is deterministic, and its
  threshold (the 0.999 quantile) would fail a correct sampler for 1 seed in 1,000;
* the caches: every distribution the loop uses equals a full forward pass on its prefix;
* the theory: alpha = sum min(p, q) = 1 - TV, and the expected tokens per target call
  (1 - alpha^(K+1)) / (1 - alpha), which the enumeration reproduces exactly.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
from scipy.stats import chi2

from llmbook.decoding import TopK
from llmbook.gpt import GPT, GPTConfig
from llmbook.speculative import (
    SpeculativeStats,
    acceptance_rate,
    expected_tokens_per_call,
    residual_distribution,
    speculative_generate,
    verify,
)

F64 = torch.float64


def random_dist(shape, seed, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharp * torch.randn(*shape, generator=g, dtype=F64), dim=-1)


def tiny_gpt(seed, V=4, n_layer=1, d_model=8):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=V, block_size=16, n_layer=n_layer, n_head=2, d_model=d_model)
    return GPT(cfg).double().eval()


# ------------------------------------------------------------------------ enumeration
def branches(prefix, p_fn, q_fn, K):
    """Every way one round can go, as (probability, emitted tokens), each outcome checked
    against :func:`verify` driven with uniforms inside its branch."""
    V = p_fn(prefix).shape[0]
    for d in itertools.product(range(V), repeat=K):
        qs = [q_fn(prefix + list(d[:i])) for i in range(K)]
        ps = [p_fn(prefix + list(d[:i])) for i in range(K + 1)]
        w_draft = math.prod(float(qs[i][d[i]]) for i in range(K))
        if w_draft == 0:
            continue
        a = [min(1.0, float(ps[i][d[i]] / qs[i][d[i]])) for i in range(K)]
        for n in range(K + 1):  # n accepted, then a rejection (n < K) or the bonus
            w = w_draft * math.prod(a[:n]) * ((1 - a[n]) if n < K else 1.0)
            if w == 0:
                continue
            last = ps[K] if n == K else residual_distribution(ps[n], qs[n])
            cdf = torch.cat([torch.zeros(1, dtype=F64), last.cumsum(0)])
            for y in range(V):
                if last[y] == 0:
                    continue
                u = [a[i] / 2 for i in range(n)]  # inside the accept interval [0, a)
                if n < K:
                    u.append((a[n] + 1) / 2)  # inside the reject interval [a, 1)
                u += [0.0] * (K - len(u))
                u.append(float((cdf[y] + cdf[y + 1]) / 2 / cdf[-1]))
                verdict = verify(
                    torch.tensor(d, dtype=torch.long),
                    torch.stack(qs) if K else torch.empty(0, V, dtype=F64),
                    torch.stack(ps),
                    u=torch.tensor(u, dtype=F64),
                )
                expected = [*d[:n], y]
                assert verdict.tokens.tolist() == expected and verdict.n_accepted == n
                yield w * float(last[y]), expected


def generated_law(p_fn, q_fn, prompt, m, K):
    """The exact law of the first m tokens that repeated rounds emit."""
    law: Counter = Counter()

    def walk(prefix, weight):
        if len(prefix) - len(prompt) >= m:
            law[tuple(prefix[len(prompt) : len(prompt) + m])] += weight
            return
        for w, toks in branches(prefix, p_fn, q_fn, K):
            walk(prefix + toks, weight * w)

    walk(list(prompt), 1.0)
    return law


def target_law(p_fn, prompt, m, V):
    law = {}
    for seq in itertools.product(range(V), repeat=m):
        prob = 1.0
        for i in range(m):
            prob *= float(p_fn(list(prompt) + list(seq[:i]))[seq[i]])
        law[seq] = prob
    return law


def assert_same_law(law, ref):
    assert set(law) <= set(ref)
    assert abs(sum(law.values()) - 1) < 1e-12
    for seq, prob in ref.items():
        assert law.get(seq, 0.0) == pytest.approx(prob, abs=1e-12), seq


@pytest.mark.parametrize("K", [1, 2, 3])
def test_one_round_emits_the_target_distribution_exactly_context_free(K):
    p, q = random_dist((3,), 1), random_dist((3,), 2)
    law = generated_law(lambda _: p, lambda _: q, [0], 1, K)
    assert_same_law(law, {(x,): float(p[x]) for x in range(3)})
    # the expected number of emitted tokens per round is (1 - a^(K+1)) / (1 - a) exactly
    mean = sum(w * len(t) for w, t in branches([0], lambda _: p, lambda _: q, K))
    alpha = float(acceptance_rate(p, q))
    assert mean == pytest.approx(expected_tokens_per_call(alpha, K), abs=1e-12)


def test_zero_draft_probabilities_and_a_perfect_draft():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=F64)  # the target never emits token 2
    q = torch.tensor([0.2, 0.0, 0.8], dtype=F64)  # the draft never proposes token 1
    assert_same_law(generated_law(lambda _: p, lambda _: q, [0], 1, 2), {(0,): 0.5, (1,): 0.5})
    # q = p: every draft token is accepted, K + 1 tokens per round
    law = generated_law(lambda _: p, lambda _: p, [0], 3, 2)
    assert_same_law(law, target_law(lambda _: p, [0], 3, 3))
    assert float(acceptance_rate(p, p)) == 1.0
    assert expected_tokens_per_call(1.0, 2) == 3.0


def test_context_dependent_tables_give_the_target_joint_law_exactly():
    V = 3
    P = {c: random_dist((V,), 10 + c) for c in range(V)}  # p(. | last token)
    Q = {c: random_dist((V,), 20 + c, sharp=1.0) for c in range(V)}
    p_fn, q_fn = (lambda s: P[s[-1]]), (lambda s: Q[s[-1]])
    for K in (1, 2):
        law = generated_law(p_fn, q_fn, [1], 3, K)
        assert_same_law(law, target_law(p_fn, [1], 3, V))


def test_two_small_gpts_give_the_target_joint_law_exactly():
    V = 3
    target, draft = tiny_gpt(0, V), tiny_gpt(1, V)

    def dist(model):
        def fn(seq):
            with torch.no_grad():
                return torch.softmax(model(torch.tensor([seq]))[0][0, -1], -1)

        return fn

    law = generated_law(dist(target), dist(draft), [0, 2], 2, 2)
    assert_same_law(law, target_law(dist(target), [0, 2], 2, V))


# ---------------------------------------------------------------------- statistical
def test_generated_tokens_pass_a_chi_square_test_against_the_target():
    V, prompt, n = 4, torch.tensor([[1, 2]]), 1500
    target, draft = tiny_gpt(3, V, 2, 16).float(), tiny_gpt(4, V).float()
    temperature, top_k = 0.8, TopK(3)

    def joint(model):  # a model's exact joint law of the first two tokens
        with torch.no_grad():
            z0 = top_k(prompt, model(prompt)[0][:, -1] / temperature)
            p0 = torch.softmax(z0.double(), -1)[0]
            law = torch.zeros(V, V, dtype=F64)
            for a in range(V):
                seq = torch.cat([prompt, torch.tensor([[a]])], 1)
                z1 = top_k(seq, model(seq)[0][:, -1] / temperature)
                law[a] = p0[a] * torch.softmax(z1.double(), -1)[0]
        return law

    ref = joint(target)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(V, V, dtype=F64)
    stats = SpeculativeStats()
    for _ in range(n):
        out, s = speculative_generate(
            target, draft, prompt, 3, 3, temperature=temperature, processors=top_k, generator=g
        )
        counts[out[0, 2], out[0, 3]] += 1
        stats.tested += s.tested
        stats.accepted += s.accepted
        stats.expected_accepted += s.expected_accepted
    keep = ref > 0
    assert counts[~keep].sum() == 0  # top-k's masked tokens never appear
    expected = n * ref[keep]
    statistic = float(((counts[keep] - expected) ** 2 / expected).sum())
    threshold = chi2.ppf(0.999, int(keep.sum()) - 1)
    assert statistic < threshold
    # the test has power: the same counts are far from the draft's own law
    ref_q = joint(draft)
    both = keep & (ref_q > 0)
    expected_q = n * ref_q[both] / ref_q[both].sum()
    assert float(((counts[both] - expected_q) ** 2 / expected_q).sum()) > 10 * threshold
    # acceptances: measured vs the sum of alpha over the tested positions (binomial noise,
    # standard deviation below sqrt(tested) / 2; 4 of them)
    assert abs(stats.accepted - stats.expected_accepted) < 4 * math.sqrt(stats.tested) / 2
    assert 0.05 < stats.acceptance_rate < 0.95  # a test that could fail both ways


def test_the_loop_uses_the_distributions_of_a_full_forward_pass():
    target, draft = tiny_gpt(5, 6, 2, 16), tiny_gpt(6, 6)
    seen = []

    def spy(input_ids, scores):
        seen.append((input_ids.clone(), scores.clone()))
        return scores

    prompt = torch.tensor([[0, 1, 2]])
    g = torch.Generator().manual_seed(1)
    out, stats = speculative_generate(target, draft, prompt, 12, 3, processors=spy, generator=g)
    assert out.shape == (1, 15) and torch.equal(out[:, :3], prompt)
    assert stats.emitted == 12 and stats.draft_calls + stats.target_calls * 0 > 0
    matched = Counter()
    with torch.no_grad():
        for ids, z in seen:  # z: the logits of one of the models on exactly this prefix
            for name, model in (("target", target), ("draft", draft)):
                if torch.allclose(z[0], model(ids)[0][0, -1], atol=1e-10, rtol=0):
                    matched[name] += 1
    assert matched["draft"] == stats.draft_calls
    assert matched["target"] == len(seen) - stats.draft_calls
    assert matched["target"] >= stats.target_calls


def test_callable_draft_and_k_shrinks_at_the_end():
    target = tiny_gpt(7, 5)
    uniform = lambda ids: torch.zeros(5, dtype=F64)  # noqa: E731
    g = torch.Generator().manual_seed(2)
    out, stats = speculative_generate(target, uniform, torch.tensor([[0]]), 7, 4, generator=g)
    assert out.shape == (1, 8) and stats.emitted == 7 and stats.draft_calls == 0 + stats.tested
    assert stats.target_calls <= 7 and 0 <= stats.accepted <= stats.tested


# --------------------------------------------------------------------------- theory
def test_acceptance_rate_is_one_minus_total_variation():
    p, q = random_dist((5, 7), 30), random_dist((5, 7), 31)
    tv = 0.5 * (p - q).abs().sum(-1)
    torch.testing.assert_close(acceptance_rate(p, q), 1 - tv, rtol=0, atol=1e-15)
    r = residual_distribution(p, q)
    torch.testing.assert_close(r.sum(-1), torch.ones(5, dtype=F64), rtol=0, atol=1e-15)
    # the identity behind exactness: q min(1, p/q) + (1 - alpha) r = p
    alpha = acceptance_rate(p, q)[:, None]
    torch.testing.assert_close(torch.minimum(p, q) + (1 - alpha) * r, p, rtol=0, atol=1e-15)


def test_expected_tokens_per_call_values_and_simulation():
    assert expected_tokens_per_call(0.0, 4) == 1.0
    assert expected_tokens_per_call(0.5, 1) == 1.5
    assert expected_tokens_per_call(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2, abs=1e-15)
    g = torch.Generator().manual_seed(3)
    accepted = torch.rand(200_000, 4, generator=g) < 0.7  # i.i.d. acceptances
    emitted = accepted.long().cumprod(1).sum(1) + 1
    # standard error < 1.2 / sqrt(2e5) < 0.003; 4 of them
    assert float(emitted.double().mean()) == pytest.approx(
        expected_tokens_per_call(0.7, 4), abs=0.012
    )


# -------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error():
    target, draft = tiny_gpt(0, 4), tiny_gpt(1, 5)
    p, q = random_dist((3, 4), 0), random_dist((2, 4), 1)
    with pytest.raises(ValueError, match="vocab"):
        speculative_generate(target, draft, torch.tensor([[0]]), 2)
    with pytest.raises(ValueError, match="context length"):
        speculative_generate(target, tiny_gpt(1, 4), torch.tensor([[0]]), 16)
    with pytest.raises(ValueError, match="one sequence"):
        speculative_generate(target, tiny_gpt(1, 4), torch.zeros(2, 1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="k must"):
        speculative_generate(target, tiny_gpt(1, 4), torch.tensor([[0]]), 2, 0)
    with pytest.raises(ValueError, match="shape"):
        speculative_generate(target, lambda ids: torch.zeros(3), torch.tensor([[0]]), 2)
    with pytest.raises(ValueError, match="q must"):
        verify(torch.tensor([0, 1]), q[:1], p)
    with pytest.raises(ValueError, match="u must"):
        verify(torch.tensor([0, 1]), q, p, u=torch.tensor([0.5, 0.5, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="alpha"):
        expected_tokens_per_call(1.5, 2)
    with pytest.raises(ValueError, match="p and q"):
        acceptance_rate(p, q)


def test_the_zoo_draft_shares_the_targets_data_and_tokenizer():
    from llmbook.zoo import RECIPES, _key

    draft, target = RECIPES["shakespeare-bpe-draft"], RECIPES["shakespeare-bpe-small"]
    # the same data key: the same tokenizer, splits and token files, so the same ids
    assert draft.data_spec() == target.data_spec()
    assert _key({"data": draft.data_spec()}) == _key({"data": target.data_spec()})
    d, t = draft.model_config(), target.model_config()
    assert d.vocab_size == t.vocab_size and d.block_size == t.block_size
    assert d.n_layer * d.d_model**2 < t.n_layer * t.d_model**2 / 10  # far cheaper blocks
    assert draft.train_config().precision == "fp32"
