"""Tests of llmbook.decoding: logits processors and the next-token choice (Chapter 12).

Tolerances. Each processor is compared with its ``transformers`` counterpart with
``torch.equal`` (bit for bit, ``-inf`` positions included): both run the same tensor
operations. :class:`FrequencyPresencePenalty` has no exact counterpart and is compared with
a direct Python loop, also exactly (one subtraction per term, in the same order, with
the penalties rounded to the scores' dtype as the tensor code rounds them).

Sampling. :func:`sample_next` draws from :func:`probabilities`; that distribution is checked
exactly against the softmax of the processed scores, and the draws themselves with a
chi-square goodness-of-fit test on 20,000 seeded draws over V = 5. Under a correct sampler
the p-value is uniform on [0, 1], so the threshold p > 1e-4 is a false-alarm rate of 1e-4
per test; the draws are seeded, so the outcome is deterministic. The same test runs on
whole generations (two tokens from a V = 5 GPT with processors: 25 enumerated outcomes).

Generation loops. :func:`generate` and :func:`beam_search` are compared with
``transformers``' ``generate`` on a GPT-2 with random weights (float64) loaded into both:
sampled tokens with the same seed, greedy tokens, beam sequences and beam scores are all
equal with ``torch.equal`` (both cast the logits to float32 and run the same float32 score
arithmetic). Beam scores are also recomputed from the model's log-probabilities by teacher
forcing, within 1e-4 (float32 sums of ~10 terms against a float64 recomputation).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare
from transformers.generation import logits_process as hf

from llmbook.decoding import (
    FrequencyPresencePenalty,
    MinP,
    NoRepeatNGram,
    ProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    Typical,
    compose,
    greedy_next,
    probabilities,
    sample_next,
)
from llmbook.gpt import MIN_TEMPERATURE

SEEDS = (0, 1, 2)
DTYPES = (torch.float32, torch.float64)
B, V, T = 4, 40, 16


def logits(seed: int, dtype: torch.dtype, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``input_ids`` (B, T) and ``scores`` (B, V); with ``ties``, scores rounded to a
    few repeated values (so tops, boundaries and cumulative sums tie)."""
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(B, V, generator=g)).to(dtype)
    if ties:
        z = torch.round(z)
    ids = torch.randint(0, V // 2, (B, T), generator=g)  # small range: repeats and n-grams
    return ids, z


# (ours, theirs) for each setting; theirs takes a float where transformers insists on one
PAIRS = [
    (Temperature(0.7), hf.TemperatureLogitsWarper(0.7)),
    (Temperature(2.5), hf.TemperatureLogitsWarper(2.5)),
    (TopK(1), hf.TopKLogitsWarper(1)),
    (TopK(5), hf.TopKLogitsWarper(5)),
    (TopK(3, min_tokens_to_keep=7), hf.TopKLogitsWarper(3, min_tokens_to_keep=7)),
    (TopK(V), hf.TopKLogitsWarper(V)),
    (TopK(V + 10), hf.TopKLogitsWarper(V + 10)),
    (TopP(0.05), hf.TopPLogitsWarper(0.05)),
    (TopP(0.5), hf.TopPLogitsWarper(0.5)),
    (TopP(0.9), hf.TopPLogitsWarper(0.9)),
    (TopP(1.0), hf.TopPLogitsWarper(1.0)),
    (TopP(0.3, min_tokens_to_keep=6), hf.TopPLogitsWarper(0.3, min_tokens_to_keep=6)),
    (MinP(0.0), hf.MinPLogitsWarper(0.0)),
    (MinP(0.05), hf.MinPLogitsWarper(0.05)),
    (MinP(0.3), hf.MinPLogitsWarper(0.3)),
    (MinP(1.0), hf.MinPLogitsWarper(1.0)),
    (MinP(0.5, min_tokens_to_keep=5), hf.MinPLogitsWarper(0.5, min_tokens_to_keep=5)),
    (Typical(0.2), hf.TypicalLogitsWarper(0.2)),
    (Typical(0.9), hf.TypicalLogitsWarper(0.9)),
    (Typical(0.5, min_tokens_to_keep=4), hf.TypicalLogitsWarper(0.5, min_tokens_to_keep=4)),
    (RepetitionPenalty(1.3), hf.RepetitionPenaltyLogitsProcessor(1.3)),
    (RepetitionPenalty(0.7), hf.RepetitionPenaltyLogitsProcessor(0.7)),
    (NoRepeatNGram(1), hf.NoRepeatNGramLogitsProcessor(1)),
    (NoRepeatNGram(2), hf.NoRepeatNGramLogitsProcessor(2)),
    (NoRepeatNGram(3), hf.NoRepeatNGramLogitsProcessor(3)),
    (NoRepeatNGram(T + 1), hf.NoRepeatNGramLogitsProcessor(T + 1)),
]
PAIR_IDS = [f"{type(o).__name__}-{i}" for i, (o, _) in enumerate(PAIRS)]


def equal_with_masks(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a, b)  # -inf == -inf, so masks must agree


# ------------------------------------------------------------- equal to transformers
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=PAIR_IDS)
def test_each_processor_equals_transformers_exactly(ours, theirs):
    for seed in SEEDS:
        for dtype in DTYPES:
            for ties in (False, True):
                ids, z = logits(seed, dtype, ties)
                expected = theirs(ids, z.clone())
                assert equal_with_masks(ours(ids, z), expected), (seed, dtype, ties)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=PAIR_IDS)
def test_each_processor_equals_transformers_on_equal_and_masked_logits(ours, theirs):
    ids = logits(0, torch.float32)[0]
    for dtype in DTYPES:
        flat = torch.full((B, V), 0.25, dtype=dtype)  # all equal: every token ties
        masked = logits(1, dtype)[1]
        masked[:, ::3] = -math.inf  # an earlier processor's mask, passed through
        for z in (flat, masked):
            assert equal_with_masks(ours(ids, z), theirs(ids, z.clone()))


def test_top_k_keeps_ties_and_at_least_min_tokens():
    z = torch.tensor([[3.0, 1.0, 3.0, 2.0, 2.0, 0.0]])
    ids = torch.zeros(1, 1, dtype=torch.long)
    kept = TopK(2)(ids, z).isfinite()
    assert kept.tolist() == [[True, False, True, False, False, False]]
    kept = TopK(3)(ids, z).isfinite()  # the third largest is tied: both 2.0s stay
    assert kept.tolist() == [[True, False, True, True, True, False]]
    assert TopK(1, min_tokens_to_keep=5)(ids, z).isfinite().sum() == 5


def test_frequency_presence_penalty_equals_a_direct_loop():
    for seed in SEEDS:
        for dtype in DTYPES:
            ids, z = logits(seed, dtype)
            z[:, 1] = -math.inf
            for freq, pres in ((0.0, 0.0), (0.5, 0.0), (0.0, 1.5), (0.3, 0.8)):
                out = FrequencyPresencePenalty(freq, pres)(ids, z)
                f, p = torch.tensor(freq, dtype=dtype), torch.tensor(pres, dtype=dtype)
                expected = z.clone()
                for b in range(B):
                    row = ids[b].tolist()
                    for v in range(V):
                        c = row.count(v)
                        expected[b, v] = expected[b, v] - f * c - p * (c > 0)
                assert equal_with_masks(out, expected), (seed, dtype, freq, pres)


def test_a_processor_list_applies_its_processors_in_order():
    ids, z = logits(0, torch.float64)
    steps = [RepetitionPenalty(1.2), NoRepeatNGram(2), Temperature(0.8), TopK(10), TopP(0.9)]
    expected = hf.LogitsProcessorList(
        [
            hf.RepetitionPenaltyLogitsProcessor(1.2),
            hf.NoRepeatNGramLogitsProcessor(2),
            hf.TemperatureLogitsWarper(0.8),
            hf.TopKLogitsWarper(10),
            hf.TopPLogitsWarper(0.9),
        ]
    )(ids, z.clone())
    assert equal_with_masks(compose(*steps)(ids, z), expected)
    assert equal_with_masks(ProcessorList(steps)(ids, z), expected)
    assert torch.equal(ProcessorList()(ids, z), z) and len(compose(*steps)) == 5


def test_no_repeat_ngram_bans_the_continuation_of_a_seen_ngram():
    ids = torch.tensor([[1, 2, 3, 1, 2]])  # "1 2" was followed by 3: 3 is banned next
    out = NoRepeatNGram(3)(ids, torch.zeros(1, 5))
    assert out.isinf().nonzero()[:, 1].tolist() == [3]
    out = NoRepeatNGram(2)(ids, torch.zeros(1, 5))  # "2" was followed by 3
    assert out.isinf().nonzero()[:, 1].tolist() == [3]


def test_typical_with_mass_one_keeps_everything():
    ids, z = logits(0, torch.float32)
    assert torch.equal(Typical(1.0)(ids, z), z)


def test_processors_accept_int32_ids_and_numpy_numbers():
    import numpy as np

    ids, z = logits(0, torch.float32)
    assert torch.equal(NoRepeatNGram(np.int64(2))(ids.int(), z), NoRepeatNGram(2)(ids, z))
    assert torch.equal(TopP(np.float32(0.5))(ids.to(torch.uint8), z), TopP(0.5)(ids, z))


# ------------------------------------------------------------------------- sampling
def processed_small() -> tuple[ProcessorList, torch.Tensor, torch.Tensor]:
    """V = 5 scores and a chain that masks one token and reshapes the rest."""
    z = torch.tensor([[1.2, -0.4, 0.3, 2.0, -3.0], [0.0, 0.5, 0.5, -1.0, 1.0]])
    ids = torch.tensor([[3, 3], [4, 1]])
    chain = compose(FrequencyPresencePenalty(0.2, 0.1), Temperature(1.4), MinP(0.05))
    return chain, ids, z


def test_the_sampler_draws_from_the_softmax_of_the_processed_scores_exactly():
    chain, ids, z = processed_small()
    zp = chain(ids, z)
    assert zp.isinf().any()  # the chain masked something
    p = probabilities(zp)
    for b in range(z.shape[0]):  # enumerate the V = 5 outcomes
        finite = zp[b].isfinite()
        norm = sum(math.exp(x) for x in zp[b][finite].double().tolist())
        for v in range(z.shape[1]):
            expected = math.exp(zp[b, v].item()) / norm if finite[v] else 0.0
            assert p[b, v].item() == pytest.approx(expected, rel=1e-6, abs=0.0)
    assert torch.equal(p, torch.softmax(zp, dim=-1))
    # the draw is torch.multinomial on exactly these probabilities
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    draws = torch.cat([sample_next(zp, g1) for _ in range(50)], 1)
    assert torch.equal(
        draws, torch.cat([torch.multinomial(p, 1, generator=g2) for _ in range(50)], 1)
    )


def test_the_draws_pass_a_chi_square_goodness_of_fit_test():
    chain, ids, z = processed_small()
    zp = chain(ids, z)
    p = probabilities(zp).double()
    g = torch.Generator().manual_seed(1234)
    n = 20_000
    draws = sample_next(zp.repeat_interleave(n, 0), g).view(2, n)
    for b in range(2):
        counts = torch.bincount(draws[b], minlength=5).double()
        support = p[b] > 0
        assert counts[~support].sum() == 0  # masked tokens are never drawn
        q = p[b][support] / p[b][support].sum()  # float32 softmax sums to 1 within ~1e-7
        result = chisquare(counts[support].numpy(), (n * q).numpy())
        print(f"row {b}: chi2 = {result.statistic:.3f}, p = {result.pvalue:.4f}")
        assert result.pvalue > 1e-4


def test_sampling_is_reproducible_with_a_seeded_generator():
    _, z = logits(0, torch.float32)
    a = sample_next(z, torch.Generator().manual_seed(3))
    b = sample_next(z, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (B, 1) and a.dtype == torch.int64


def test_greedy_takes_the_first_maximum_and_is_the_low_temperature_limit():
    z = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, -1.0, 0.0, 5.0]])
    assert greedy_next(z).tolist() == [[1], [0]]
    _, zr = logits(0, torch.float32)
    ids = torch.zeros(B, 1, dtype=torch.long)
    cold = Temperature(MIN_TEMPERATURE)(ids, zr)
    assert torch.equal(sample_next(cold, torch.Generator().manual_seed(0)), greedy_next(zr))


# ------------------------------------------------------------------------ bad input
BAD_SETTINGS = [
    (lambda: Temperature(0), "temperature.*greedy_next"),
    (lambda: Temperature(-1.0), "temperature"),
    (lambda: Temperature(math.nan), "temperature"),
    (lambda: Temperature(math.inf), "temperature"),
    (lambda: TopK(0), "top_k"),
    (lambda: TopK(2.5), "top_k"),
    (lambda: TopK(3, min_tokens_to_keep=0), "min_tokens_to_keep"),
    (lambda: TopP(0.0), "top_p"),
    (lambda: TopP(1.01), "top_p"),
    (lambda: TopP(math.nan), "top_p"),
    (lambda: MinP(-0.1), "min_p"),
    (lambda: MinP(1.5), "min_p"),
    (lambda: Typical(0.0), "mass"),
    (lambda: Typical(1.2), "mass"),
    (lambda: RepetitionPenalty(0.0), "penalty"),
    (lambda: RepetitionPenalty(-1.0), "penalty"),
    (lambda: FrequencyPresencePenalty(frequency=-0.1), "frequency"),
    (lambda: FrequencyPresencePenalty(presence=-0.1), "presence"),
    (lambda: NoRepeatNGram(0), "ngram_size"),
    (lambda: ProcessorList([TopK(2), 5]), r"processors\[1\]"),
    (lambda: ProcessorList(5), "processors"),
]


@pytest.mark.parametrize(("make", "match"), BAD_SETTINGS)
def test_bad_settings_are_refused_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_tensors_are_refused_naming_the_argument():
    ids, z = logits(0, torch.float32)
    p = TopK(3)
    with pytest.raises(ValueError, match="scores"):
        p(ids, z[0])  # 1-d
    with pytest.raises(ValueError, match="scores"):
        p(ids, z.long())  # not float
    with pytest.raises(ValueError, match="scores"):
        p(ids, z.masked_fill(z > 1, math.nan))
    with pytest.raises(ValueError, match="input_ids"):
        p(ids[0], z)  # 1-d
    with pytest.raises(ValueError, match="input_ids"):
        p(ids.float(), z)
    with pytest.raises(ValueError, match="input_ids"):
        p(ids + V, z)  # ids beyond the vocabulary
    with pytest.raises(ValueError, match="batch size"):
        p(ids[:2], z)
    with pytest.raises(ValueError, match="scores"):
        sample_next(torch.full((1, 3), -math.inf))  # everything masked
    with pytest.raises(ValueError, match="scores"):
        sample_next(z.masked_fill(z > 1, math.inf))
    with pytest.raises(ValueError, match="generator"):
        sample_next(z, generator=0)
    with pytest.raises(ValueError, match="scores"):
        greedy_next(z.long())


# ------------------------------------------------------------ generation over the GPT
# A small GPT-2 with random weights in float64, loaded into both implementations. The
# token embeddings are scaled by 3 so that the next-token distributions are peaked enough
# for beams to differ and for the end token to end some of them. Both implementations
# cast the logits to float32 before decoding, so equal weights give equal tokens and
# (bit for bit) equal scores: the tests use torch.equal.
def hf_and_ours(seed: int, V: int = 40, n_positions: int = 32):
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    from llmbook.gpt import GPT

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=V, n_positions=n_positions, n_embd=16, n_layer=2, n_head=2)
    hf_model = GPT2LMHeadModel(cfg).double().eval()
    with torch.no_grad():
        hf_model.transformer.wte.weight.mul_(3.0)
    return hf_model, GPT.from_hf_gpt2(hf_model).eval()


def prompt(seed: int, B: int = 2, T: int = 4, V: int = 40) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# seeds whose end token (the most frequent sampled one, chosen below) ends beams
BEAM_SEEDS = (0, 2)


def end_token(ours, ids) -> int:
    from llmbook.decoding import generate

    s = generate(ours, ids, 20, generator=torch.Generator().manual_seed(1))
    return int(torch.bincount(s[:, ids.shape[1] :].flatten()).argmax())


@pytest.mark.parametrize("seed", BEAM_SEEDS)
def test_beam_search_equals_transformers_sequences_and_scores(seed):
    from llmbook.decoding import beam_search

    hf_model, ours = hf_and_ours(seed)
    ids = prompt(seed)
    eos = end_token(ours, ids)
    ended = 0
    for K in (2, 4):
        for alpha in (1.0, -0.7, 2.0):
            for stop in (False, True, "never"):
                for n_ret in (1, K):
                    theirs = hf_model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=10,
                        num_beams=K,
                        do_sample=False,
                        length_penalty=alpha,
                        early_stopping=stop,
                        num_return_sequences=n_ret,
                        eos_token_id=eos,
                        pad_token_id=eos,
                        return_dict_in_generate=True,
                        output_scores=True,
                    )
                    out = beam_search(
                        ours,
                        ids,
                        10,
                        K,
                        length_penalty=alpha,
                        early_stopping=stop,
                        num_return_sequences=n_ret,
                        eos_token_id=eos,
                    )
                    setting = (K, alpha, stop, n_ret)
                    assert torch.equal(out.sequences, theirs.sequences), setting
                    assert torch.equal(out.scores, theirs.sequences_scores), setting
                    ended += int((out.lengths < 10).sum())
    assert ended >= 20  # the end token really ended many hypotheses


def test_beam_search_with_processors_equals_transformers():
    from llmbook.decoding import beam_search

    hf_model, ours = hf_and_ours(0)
    ids = prompt(0)
    theirs = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        num_beams=3,
        num_return_sequences=3,
        do_sample=False,
        no_repeat_ngram_size=2,
        repetition_penalty=1.3,
        eos_token_id=0,
        pad_token_id=0,
        return_dict_in_generate=True,
        output_scores=True,
    )
    procs = [RepetitionPenalty(1.3), NoRepeatNGram(2)]
    out = beam_search(ours, ids, 12, 3, num_return_sequences=3, eos_token_id=0, processors=procs)
    assert torch.equal(out.sequences, theirs.sequences)
    assert torch.equal(out.scores, theirs.sequences_scores)


def test_beam_scores_are_the_length_penalised_log_probabilities():
    from llmbook.decoding import beam_search

    _, ours = hf_and_ours(2)
    ids = prompt(2, B=1)
    out = beam_search(ours, ids, 8, 3, length_penalty=0.6, num_return_sequences=3)
    with torch.no_grad():
        logp = torch.log_softmax(ours(out.sequences)[0].double(), -1)
    T = ids.shape[1]
    for i, (seq, score, n) in enumerate(zip(out.sequences, out.scores, out.lengths, strict=True)):
        j = torch.arange(int(n))
        total = float(logp[i, T - 1 + j, seq[T + j]].sum())
        assert float(score) == pytest.approx(total / int(n) ** 0.6, abs=1e-4)  # float32 sums
    assert bool((out.scores[:-1] >= out.scores[1:]).all())  # best first


def test_one_beam_without_an_end_token_is_greedy_decoding():
    from llmbook.decoding import beam_search, generate

    _, ours = hf_and_ours(0)
    ids = prompt(0)
    out = beam_search(ours, ids, 10, 1)
    assert torch.equal(out.sequences, generate(ours, ids, 10, greedy=True))


def test_sampling_equals_transformers_generate_with_the_same_seed():
    from llmbook.decoding import generate

    hf_model, ours = hf_and_ours(0)
    ids = prompt(3, B=3)
    cases = [
        (dict(temperature=0.8, top_k=None), [Temperature(0.8)]),
        (dict(temperature=1.3, top_k=10, top_p=0.9), [Temperature(1.3), TopK(10), TopP(0.9)]),
        (dict(top_k=None, min_p=0.1, repetition_penalty=1.3), [RepetitionPenalty(1.3), MinP(0.1)]),
        (dict(top_k=None, typical_p=0.8, no_repeat_ngram_size=2), [NoRepeatNGram(2), Typical(0.8)]),
    ]
    finished = 0
    for kwargs, procs in cases:
        for seed in range(2):
            torch.manual_seed(seed)  # transformers draws from the global generator
            theirs = hf_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                max_new_tokens=15,
                eos_token_id=0,
                pad_token_id=0,
                **kwargs,
            )
            g = torch.Generator().manual_seed(seed)
            ours_ids = generate(ours, ids, 15, procs, generator=g, eos_token_id=0)
            assert torch.equal(ours_ids, theirs), (kwargs, seed)
            finished += int((ours_ids[:, 4:] == 0).any(1).sum())
    assert finished > 0  # some rows ended with the end token and were padded


def test_greedy_generation_equals_transformers_and_stops_when_all_rows_end():
    from llmbook.decoding import generate

    hf_model, ours = hf_and_ours(2)
    ids = prompt(2)
    eos = end_token(ours, ids)
    theirs = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=20,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    out = generate(ours, ids, 20, greedy=True, eos_token_id=eos)
    assert torch.equal(out, theirs)


def test_generate_equals_the_models_own_loop_and_slides_past_the_context():
    from llmbook.decoding import generate

    _, ours = hf_and_ours(0, n_positions=16)
    ids = prompt(0)
    for n in (5, 30):  # 30 > block_size = 16: the window slides
        a = generate(
            ours, ids, n, [Temperature(0.9), TopK(7)], generator=torch.Generator().manual_seed(4)
        )
        b = ours.generate(
            ids, n, temperature=0.9, top_k=7, generator=torch.Generator().manual_seed(4)
        )
        assert torch.equal(a, b) and a.shape == (2, 4 + n)


def test_generated_pairs_pass_a_goodness_of_fit_test_against_enumeration():
    """Two tokens from a V = 5 model with processors: the 25 outcomes' exact probabilities
    by enumeration, against 20,000 seeded draws (chi-square, false-alarm rate 1e-4)."""
    from llmbook.decoding import generate
    from llmbook.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, d_model=8)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(20.0)
    chain = compose(RepetitionPenalty(1.5), Temperature(0.7), TopP(0.95))
    ids = torch.tensor([[1, 2]])
    exact = torch.zeros(5, 5, dtype=torch.float64)
    with torch.no_grad():
        p1 = probabilities(chain(ids, model(ids)[0][:, -1].float())).double()[0]
        for a in range(5):
            ia = torch.cat((ids, torch.tensor([[a]])), 1)
            p2 = probabilities(chain(ia, model(ia)[0][:, -1].float())).double()[0]
            exact[a] = p1[a] * p2
    assert (exact == 0).any() and exact.sum().item() == pytest.approx(1.0, abs=1e-6)
    n = 20_000
    draws = generate(model, ids.repeat(n, 1), 2, chain, generator=torch.Generator().manual_seed(9))
    counts = torch.bincount(draws[:, 2] * 5 + draws[:, 3], minlength=25).double()
    support = exact.flatten() > 0
    assert counts[~support].sum() == 0
    q = exact.flatten()[support] / exact.flatten()[support].sum()
    assert chisquare(counts[support].numpy(), (n * q).numpy()).pvalue > 1e-4


def test_generation_loops_refuse_bad_input_naming_the_argument():
    from llmbook.decoding import BeamSearchOutput, beam_search, generate

    _, m = hf_and_ours(0, n_positions=16)
    ids = prompt(0)
    bad = [
        ("input_ids", lambda: generate(m, ids[:, :0], 3)),  # empty prompt
        ("block_size", lambda: generate(m, torch.zeros(1, 17, dtype=torch.long), 3)),
        ("input_ids", lambda: generate(m, ids + 40, 3)),
        ("max_new_tokens", lambda: generate(m, ids, -1)),
        ("model", lambda: generate("gpt", ids, 3)),
        ("generator", lambda: generate(m, ids, 3, generator=3)),
        ("eos_token_id", lambda: generate(m, ids, 3, eos_token_id=40)),
        (r"processors\[0\]", lambda: generate(m, ids, 3, ["top_k"])),
        ("greedy", lambda: generate(m, ids, 3, greedy="yes")),
        ("temperature", lambda: generate(m, ids, 3, Temperature(0.0))),
        ("num_beams", lambda: beam_search(m, ids, 3, 0)),
        ("num_return_sequences", lambda: beam_search(m, ids, 3, 2, num_return_sequences=3)),
        ("early_stopping", lambda: beam_search(m, ids, 3, 2, early_stopping="sometimes")),
        ("early_stopping", lambda: beam_search(m, ids, 3, 2, early_stopping=1)),
        ("length_penalty", lambda: beam_search(m, ids, 3, 2, length_penalty=math.nan)),
        ("max_new_tokens", lambda: beam_search(m, ids, 13, 2)),  # 4 + 13 > 16
        ("max_new_tokens", lambda: beam_search(m, ids, 0, 2)),
        ("input_ids", lambda: beam_search(m, ids[:, :0], 3, 2)),
        ("scores", lambda: BeamSearchOutput(ids, torch.zeros(3), torch.zeros(2).long())),
    ]
    for match, call in bad:
        with pytest.raises(ValueError, match=match):
            call()


def test_repeated_ngram_rate_counts_repeats():
    from llmbook.decoding import repeated_ngram_rate

    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 1, 2, 1, 2], [7, 7, 7, 7, 7, 7]])
    rate = repeated_ngram_rate(ids, 2)  # 5 bigrams: 5, 2 and 1 distinct
    assert rate.tolist() == pytest.approx([0.0, 3 / 5, 4 / 5], abs=0)
    assert repeated_ngram_rate(ids, 6).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="n=7"):
        repeated_ngram_rate(ids, 7)
    with pytest.raises(ValueError, match="ids"):
        repeated_ngram_rate(ids.float(), 2)
