"""Tests of llmbook.parallel: the gloo process group, DDP, FSDP, tensor parallelism,
pipeline schedules, saved-tensor measurement and activation checkpointing.

The distributed tests spawn two CPU processes (a few seconds each). Equalities are in
float64: after 3 AdamW steps, DDP and FSDP parameters equal single-process training on the
concatenated batch to 1e-12 (the order of the gradient sum differs, so not bit-exactly:
observed ~3e-14), and the tensor-parallel FFN equals the full layer to 1e-12.
"""

import itertools

import pytest
import torch

from llmbook import parallel
from llmbook.counting import pipeline_bubble_fraction, saved_activation_bytes
from llmbook.gpt import GPT, GPTConfig


def failing_worker(rank, world_size):
    """A worker that fails on rank 1 (the other blocks in a collective)."""
    if rank == 1:
        raise ArithmeticError("boom")
    torch.distributed.barrier()


def sum_worker(rank, world_size, value):
    t = torch.tensor([float(value + rank)])
    torch.distributed.all_reduce(t)
    return t.item()


@pytest.fixture(scope="module")
def reference():
    return parallel.reference_train(3)


def test_ddp_equals_single_process_on_the_concatenated_batch(reference):
    results = parallel.run_workers(parallel.ddp_train, 2, (3,), timeout=60)
    for r in results:
        assert (r["params"] - reference["params"]).abs().max().item() < 1e-12
    # the ranks' losses are losses on halves; their mean is the full-batch loss
    for s in range(3):
        mean = (results[0]["losses"][s] + results[1]["losses"][s]) / 2
        assert mean == pytest.approx(reference["losses"][s], abs=1e-12)
    # results come back in rank order: rank 0 trained on the first half of each batch
    first_half = parallel.toy_model()(*[t[:4] for t in parallel.toy_batch(0, 8)])[1].item()
    assert results[0]["losses"][0] == pytest.approx(first_half, abs=1e-12)
    # not trivially equal: the parameters moved
    assert (reference["params"] - parallel.flat_parameters(parallel.toy_model())).abs().max() > 1e-3


@pytest.mark.slow
def test_chapter_demos_fsdp_shards_and_tensor_parallel(reference):
    out = parallel.run_workers(parallel.chapter_demos, 2, (3, [16, 1024]), timeout=90)
    n_bytes = reference["params"].numel() * 8
    for r in out:
        assert (r["fsdp"]["params"] - reference["params"]).abs().max().item() < 1e-12
        # ZeRO-3: each rank holds half the weights, gradients and Adam moments (first
        # dimensions of the toy model are even, so the halves are exact)
        assert r["fsdp"]["weights"] == n_bytes // 2 == r["fsdp"]["gradients"]
        assert r["fsdp"]["optimizer"] == n_bytes
        assert r["tensor_parallel"]["max_abs_error"] < 1e-12
        assert r["tensor_parallel"]["shard_fraction"] == 0.5
        assert len(r["allreduce"]) == 2 and all(t > 0 for t in r["allreduce"])


@pytest.mark.slow
def test_run_workers_cleans_up_after_a_failure():
    with pytest.raises(RuntimeError, match="ArithmeticError: boom"):
        parallel.run_workers(failing_worker, 2, (), timeout=60)
    for child in torch.multiprocessing.active_children():  # nothing left running
        assert not child.is_alive() or child.name.startswith("SyncManager")


def test_free_port_is_bindable():
    import socket

    port = parallel.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("p,m", [(1, 1), (2, 1), (4, 4), (4, 8), (3, 16), (8, 32)])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_bubble_equals_the_formula(p, m, schedule):
    ops = parallel.pipeline_schedule(p, m, schedule)
    assert len(ops) == 2 * p * m
    assert parallel.bubble_fraction(ops) == pytest.approx(pipeline_bubble_fraction(p, m), abs=1e-12)
    # each stage runs one pass at a time, and every backward follows its forward
    for s in range(p):
        mine = sorted((o for o in ops if o.stage == s), key=lambda o: o.start)
        assert all(a.end <= b.start + 1e-12 for a, b in itertools.pairwise(mine))
    end = {(o.kind, o.stage, o.micro): o.end for o in ops}
    start = {(o.kind, o.stage, o.micro): o.start for o in ops}
    for s in range(1, p):
        for i in range(m):
            assert start[("F", s, i)] >= end[("F", s - 1, i)]
            assert start[("B", s - 1, i)] >= end[("B", s, i)]


def test_1f1b_holds_fewer_micro_batches_than_gpipe():
    p, m = 4, 8
    assert parallel.peak_in_flight(parallel.pipeline_schedule(p, m, "gpipe")) == [m] * p
    assert parallel.peak_in_flight(parallel.pipeline_schedule(p, m, "1f1b")) == [4, 3, 2, 1]


def test_saved_tensor_bytes_counts_a_known_graph():
    x = torch.randn(100, 10, requires_grad=True)
    w = torch.randn(10, 10, requires_grad=True)
    nbytes, y = parallel.saved_tensor_bytes(lambda: torch.tanh(x @ w), exclude=[w])
    # matmul saves x (and w, excluded); tanh saves its output
    assert nbytes == 100 * 10 * 4 + 100 * 10 * 4
    assert y.shape == (100, 10)


def _small_gpt(n_layer):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=128, block_size=32, n_layer=n_layer, n_head=2, d_model=32)
    return GPT(cfg), torch.randint(0, 128, (2, 32))


def test_saved_activations_per_layer_match_the_count():
    meas = []
    for L in (1, 3):
        m, idx = _small_gpt(L)
        meas.append(parallel.saved_tensor_bytes(lambda m=m, i=idx: m(i, i), m.parameters())[0])
    per_layer = (meas[1] - meas[0]) / 2
    m, _ = _small_gpt(1)
    predicted = saved_activation_bytes(m.config, 2, 32)
    # extras beyond the count: norm statistics, the causal mask, the fused QKV weight copy
    extra = 2 * 2 * 32 * 4 * 2 + 32 * 32 + 32 + 3 * 32 * 32 * 4
    assert per_layer == pytest.approx(predicted + extra, rel=0.02)


@pytest.mark.parametrize("segment", [1, 2, 4])
def test_checkpointed_forward_equals_the_plain_one(segment):
    m, idx = _small_gpt(4)
    m = m.double()
    _, loss = m(idx, idx)
    g = torch.autograd.grad(loss, list(m.parameters()))
    loss_c = parallel.forward_checkpointed(m, idx, idx, segment)
    g_c = torch.autograd.grad(loss_c, list(m.parameters()))
    assert loss_c.item() == pytest.approx(loss.item(), abs=1e-12)
    assert max((a - b).abs().max().item() for a, b in zip(g, g_c, strict=True)) < 1e-12
    saved = parallel.saved_tensor_bytes(
        lambda: parallel.forward_checkpointed(m, idx, idx, segment), m.parameters()
    )[0]
    full = parallel.saved_tensor_bytes(lambda: m(idx, idx), m.parameters())[0]
    assert saved < full / 2


def test_toy_batch_is_deterministic_and_shifted():
    x, y = parallel.toy_batch(3, 4)
    x2, _ = parallel.toy_batch(3, 4)
    assert torch.equal(x, x2) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: parallel.pipeline_schedule(0, 4), "n_stages"),
        (lambda: parallel.pipeline_schedule(2, 4, "zb"), "schedule"),
        (lambda: parallel.bubble_fraction([]), "ops"),
        (lambda: parallel.run_workers(lambda r, w: 0, 2), "fn"),
        (lambda: parallel.run_workers(sum_worker, 0), "world_size"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
