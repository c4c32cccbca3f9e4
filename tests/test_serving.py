"""Tests of llmbook.serving: the roofline, step costs and the batching simulator.

FLOP and byte counts are integers computed two ways (by hand and with
``llmbook.counting``) and must agree exactly (compared as floats, exact below 2**53).
The simulator is deterministic: its times on hand-made traces are checked exactly
against schedules worked out by hand (unit step costs, so every time is an integer).
Measurements only need to be positive and finite: no wall-clock value is asserted.
"""

import numpy as np
import pytest
import torch

from llmbook import serving
from llmbook.counting import count_parameters, flops_per_token, kv_cache_bytes
from llmbook.gpt import GPT, GPTConfig
from llmbook.serving import CostModel, Trace, simulate

CFG = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=16, bias=False)


# ----------------------------------------------------------------- ceilings, roofline
def test_measured_ceilings_are_positive_and_use_the_clock_given():
    assert 0 < serving.matmul_flops_per_s(64, repeats=2) < float("inf")
    assert 0 < serving.memory_bandwidth(2**16, repeats=2) < float("inf")
    ticks = iter(range(100))
    # a fake clock that advances one "second" per call: each timing lasts exactly 1
    assert serving.matmul_flops_per_s(8, repeats=3, clock=lambda: next(ticks)) == 2 * 8**3
    assert serving.memory_bandwidth(400, repeats=2, clock=lambda: next(ticks)) == 800
    s = serving.decode_step_seconds(
        _model(), torch.zeros(1, 2).long(), 3, clock=lambda: next(ticks)
    )
    np.testing.assert_array_equal(s, [1, 1, 1])


def test_roofline_is_the_minimum_of_the_two_roofs():
    peak, beta = 100.0, 10.0  # ridge at 10 FLOP/byte
    assert serving.roofline(1.0, peak, beta) == 10.0
    assert serving.roofline(50.0, peak, beta) == 100.0
    np.testing.assert_array_equal(
        serving.roofline(np.array([0, 10, 20]), peak, beta), [0, 100, 100]
    )
    with pytest.raises(ValueError, match="intensity"):
        serving.roofline(-1.0, peak, beta)


def test_step_cost_prefill_equals_counting_flops_per_token():
    for B, T in [(1, 1), (1, 32), (3, 17)]:
        cost = serving.step_cost(CFG, batch=B, new_tokens=T, bytes_per_value=4)
        assert cost["flops"] == B * T * flops_per_token(CFG, T, include_head=True)
        n_w = count_parameters(CFG, non_embedding=True) + 16 * 64
        assert cost["bytes"] == 4 * n_w + kv_cache_bytes(CFG, B, T, 4)


def test_step_cost_decode_by_hand_and_intensity():
    n_w = count_parameters(CFG, non_embedding=True) + 16 * 64
    c = 20
    cost = serving.step_cost(CFG, batch=5, new_tokens=1, context=c, bytes_per_value=2)
    assert cost["flops"] == 5 * (2 * n_w + 2 * 2 * 16 * (2 * c + 1))
    assert cost["bytes"] == 2 * n_w + 2 * 2 * 2 * 8 * (c + 1) * 5 * 2
    # decoding one sequence reads every weight for ~2 FLOPs: intensity about 2 / bytes
    one = serving.step_cost(CFG, batch=1, new_tokens=1, context=0, bytes_per_value=2)
    assert one["intensity"] == pytest.approx(1.0, rel=0.01)
    prefill = serving.step_cost(CFG, batch=1, new_tokens=32, bytes_per_value=2)
    assert prefill["intensity"] > 10 * one["intensity"]
    bigger = serving.step_cost(CFG, batch=8, new_tokens=1, context=0, bytes_per_value=2)
    assert bigger["intensity"] > one["intensity"]


def test_llama2_7b_decode_is_memory_bound_and_prefill_compute_bound():
    llama = GPTConfig(
        vocab_size=32_000, block_size=4096, n_layer=32, n_head=32, d_model=4096,
        d_ff=11_008, positional="rope", norm="rmsnorm", activation="swiglu", bias=False,
        tie_embeddings=False,
    )  # fmt: skip
    dec = serving.step_cost(llama, batch=1, new_tokens=1, context=1000, bytes_per_value=2)
    pre = serving.step_cost(llama, batch=1, new_tokens=2048, bytes_per_value=2)
    ridge = 989e12 / 3.35e12  # an H100 SXM's dense 16-bit peak over its bandwidth: ~295
    assert dec["intensity"] < 1.0 < ridge < pre["intensity"]


# -------------------------------------------------------------------- measured costs
def _model():
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_decode_step_seconds_has_one_time_per_step():
    m = _model()
    prompt = torch.zeros(1, 4, dtype=torch.long)
    for use_cache in (True, False):
        s = serving.decode_step_seconds(m, prompt, 5, use_cache=use_cache)
        assert s.shape == (5,) and np.all(s > 0)
    with pytest.raises(ValueError, match="prompt"):
        serving.decode_step_seconds(m, torch.zeros(1, 30, dtype=torch.long), 5)


def test_measure_step_costs_and_fit():
    m = _model()
    c = serving.measure_step_costs(
        m, prefill_shapes=[(1, 4), (2, 8)], decode_batches=[1, 3], context=4, repeats=2
    )
    assert list(c["prefill_tokens"]) == [4, 16] and list(c["decode_batch"]) == [1, 3]
    assert np.all(c["prefill_seconds"] > 0) and np.all(c["decode_seconds"] > 0)
    assert isinstance(serving.fit_cost_model(**c), CostModel)


def test_fit_recovers_exact_lines_and_clips_negative_slopes():
    n = np.array([10, 20, 40])
    B = np.array([1, 2, 4, 8])
    cm = serving.fit_cost_model(n, 0.5 + 0.01 * n, B, 2.0 + 0.25 * B)
    assert cm.prefill_base == pytest.approx(0.5) and cm.prefill_per_token == pytest.approx(0.01)
    assert cm.decode_base == pytest.approx(2.0) and cm.decode_per_seq == pytest.approx(0.25)
    assert cm.prefill_time(100) == pytest.approx(1.5) and cm.decode_time(4) == pytest.approx(3.0)
    flat = serving.fit_cost_model(n, np.array([3.0, 2.0, 1.0]), B, np.ones(4))
    assert flat.prefill_per_token == 0.0 and flat.prefill_base == pytest.approx(2.0)
    assert flat.decode_per_seq == pytest.approx(0.0, abs=1e-12)
    origin = serving.fit_cost_model(n, 0.02 * n - 0.1, B, B * 1.0)
    assert origin.prefill_base == 0.0 and origin.prefill_per_token > 0


# ----------------------------------------------------------------------------- trace
def test_trace_checks_and_poisson_arrivals():
    with pytest.raises(ValueError, match="arrival"):
        Trace([1.0, 0.5], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="output_len"):
        Trace([0.0, 1.0], [1, 1], [1, 0])
    a = serving.poisson_arrivals(20_000, rate=4.0, seed=3)
    assert a[0] == 0 and np.all(np.diff(a) >= 0)
    np.testing.assert_array_equal(a, serving.poisson_arrivals(20_000, rate=4.0, seed=3))
    # mean gap 1/4 s; its standard error is 0.25/sqrt(20000) = 0.0018: allow 5 of them
    assert abs(a[-1] / (len(a) - 1) - 0.25) < 5 * 0.25 / np.sqrt(20_000)


def test_percentiles_match_numpy_and_skip_nan():
    x = np.array([3.0, 1.0, np.nan, 2.0, 10.0])
    p = serving.percentiles(x)
    assert p == {k: float(np.percentile([1, 2, 3, 10], q)) for k, q in
                 (("p50", 50), ("p90", 90), ("p99", 99))}  # fmt: skip


# ------------------------------------------------------------------------- simulator
UNIT = CostModel(1.0, 0.0, 1.0, 0.0)  # every step takes one second


def test_static_schedule_by_hand():
    tr = Trace([0.0, 0.0, 0.0], [1, 1, 1], [3, 1, 2])
    r = simulate(tr, UNIT, policy="static", max_batch=2)
    # batch {0, 1}: prefill ends at 1, two decode steps (request 0 needs 3 tokens)
    # then batch {2}: prefill 3 -> 4, one decode step -> 5
    np.testing.assert_array_equal(r.first_token, [1, 1, 4])
    np.testing.assert_array_equal(r.finish, [3, 1, 5])
    assert r.throughput == 6 / 5 and r.n_steps == 5 and r.busy == 5
    np.testing.assert_array_equal(r.tpot, [1.0, np.nan, 1.0])


def test_continuous_schedule_by_hand():
    tr = Trace([0.0, 0.0, 0.0], [1, 1, 1], [3, 1, 2])
    r = simulate(tr, UNIT, policy="continuous", max_batch=2)
    # prefill {0, 1} -> 1 (request 1 is done); prefill {2} -> 2; decode {0, 2} -> 3
    # (request 2 is done); decode {0} -> 4
    np.testing.assert_array_equal(r.first_token, [1, 1, 2])
    np.testing.assert_array_equal(r.finish, [4, 1, 3])
    assert r.throughput == 6 / 4 and r.n_steps == 4
    np.testing.assert_array_equal(r.ttft, [1, 1, 2])


def test_static_pads_prompts_and_waits_for_arrivals():
    cm = CostModel(0.0, 1.0, 1.0, 0.0)  # prefill: one second per (padded) token
    tr = Trace([0.0, 0.0, 10.0], [2, 5, 1], [1, 1, 2])
    r = simulate(tr, cm, policy="static", max_batch=4)
    np.testing.assert_array_equal(r.first_token, [10, 10, 11])  # 2 x 5 padded tokens
    np.testing.assert_array_equal(r.finish, [10, 10, 12])
    c = simulate(tr, cm, policy="continuous", max_batch=4)
    np.testing.assert_array_equal(c.first_token, [7, 7, 11])  # 2 + 5 tokens, no padding


def test_batch_of_one_is_the_same_under_both_policies():
    rng = np.random.default_rng(0)
    tr = Trace(serving.poisson_arrivals(50, 2.0), rng.integers(1, 50, 50), rng.integers(1, 30, 50))
    cm = CostModel(0.01, 0.001, 0.02, 0.001)
    s = simulate(tr, cm, policy="static", max_batch=1)
    c = simulate(tr, cm, policy="continuous", max_batch=1)
    np.testing.assert_allclose(s.finish, c.finish, rtol=1e-12)
    np.testing.assert_allclose(s.first_token, c.first_token, rtol=1e-12)


def test_continuous_beats_static_under_load_and_is_deterministic():
    rng = np.random.default_rng(1)
    n = 300
    tr = Trace(serving.poisson_arrivals(n, 50.0), rng.integers(5, 100, n), rng.integers(1, 300, n))
    cm = CostModel(0.002, 0.0001, 0.005, 0.0005)
    s = simulate(tr, cm, policy="static", max_batch=8)
    c = simulate(tr, cm, policy="continuous", max_batch=8)
    assert c.throughput > 1.2 * s.throughput
    assert c.summary()["ttft_p90"] < s.summary()["ttft_p90"]
    again = simulate(tr, cm, policy="continuous", max_batch=8)
    np.testing.assert_array_equal(again.finish, c.finish)
    for r in (s, c):  # causality: no token before its request's arrival and prefill
        assert np.all(r.first_token >= tr.arrival + cm.prefill_time(1))
        assert np.all(r.finish >= r.first_token)
        assert set(r.summary()) == {"throughput"} | {
            f"{m}_p{q}" for m in ("ttft", "tpot", "latency") for q in (50, 90, 99)
        }


def test_simulate_refuses_bad_arguments():
    tr = Trace([0.0], [1], [1])
    with pytest.raises(ValueError, match="policy"):
        simulate(tr, UNIT, policy="dynamic", max_batch=2)
    with pytest.raises(ValueError, match="max_batch"):
        simulate(tr, UNIT, policy="static", max_batch=0)
    with pytest.raises(ValueError, match="decode_base"):
        CostModel(1.0, 0.0, 0.0, 0.0)
