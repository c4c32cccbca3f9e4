"""Tests of llmbook.train: schedule, optimizer groups, accumulation, clipping, the loop,
checkpoints and exact resumption.

Models are tiny (d_model 16, 1 layer, context 16) so the file runs in a few seconds.
Tolerances: the learning-rate schedule is compared with torch's LinearLR + CosineAnnealingLR
at relative 1e-9 (torch updates the cosine recursively, which rounds differently from the
closed form by ~1e-15 per step); gradient accumulation is compared in float64 at 1e-12
(the two computations sum the same terms in a different order, ~1e-16 relative each);
resumption must be bit-exact (torch.equal), since it replays the same operations, in
bfloat16 autocast too. bfloat16 keeps 8 significant bits (relative rounding 2^-8 = 0.4%),
so bf16 losses are compared with float32 ones at a few tenths of a percent (see each test).
"""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import llmbook.train as train_module
from llmbook.gpt import GPT, GPTConfig
from llmbook.train import (
    PRECISIONS,
    History,
    TrainConfig,
    accumulate_gradients,
    autocast,
    configure_optimizer,
    evaluate,
    load_checkpoint,
    lr_at,
    resolve_precision,
    save_checkpoint,
    train,
    train_step,
)

V, CTX = 64, 16


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=V, block_size=CTX, n_layer=1, n_head=2, d_model=16)
    return GPT(GPTConfig(**{**base, **kw}))


def cfg(**kw):
    base = dict(max_steps=8, batch_size=4, block_size=CTX, lr=3e-3, min_lr=3e-4,
                warmup_steps=2, eval_interval=3, eval_batches=2, log_interval=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).integers(0, V, 4000).astype(np.uint16)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field, value",
    [("batch_size", 0), ("max_steps", 0), ("block_size", -1), ("grad_accum_steps", 0),
     ("eval_interval", 0), ("eval_batches", 0), ("warmup_steps", -1), ("warmup_steps", 9),
     ("lr", 0.0), ("lr", float("nan")), ("min_lr", -1e-4), ("min_lr", 1.0),
     ("weight_decay", -0.1), ("grad_clip", 0.0), ("betas", (0.9, 1.0)), ("betas", (0.9,)),
     ("seed", -1), ("batch_size", 2.0), ("batch_size", True), ("precision", "fp16"),
     ("precision", "BF16"), ("precision", None)],
)  # fmt: skip
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        cfg(**{field: value})


def test_config_normalises_betas_and_counts_tokens():
    c = cfg(betas=[0.8, 0.9], grad_accum_steps=3)
    assert c.betas == (0.8, 0.9)
    assert c.tokens_per_step == 3 * 4 * CTX


# ------------------------------------------------------------------------ precision
def test_autocast_casts_matmuls_to_bf16_only_when_asked():
    lin = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast("bf16", "cpu"):
        assert lin(x).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert lin(x).dtype == torch.float32
    assert lin(x).dtype == torch.float32  # the context is left behind


@pytest.mark.parametrize("native", [True, False])
def test_resolve_precision(monkeypatch, native):
    monkeypatch.delenv("LLMBOOK_PRECISION", raising=False)
    monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda: native)
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("auto", "meta") == "fp32"  # no native bf16 known: float32
    with autocast("auto", "cpu"):
        assert nn.Linear(2, 2)(torch.ones(2)).dtype == (torch.bfloat16 if native else torch.float32)
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "cuda") == "fp32"
    assert set(PRECISIONS) == {"fp32", "bf16", "auto"}


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_precision_env_overrides_auto_only(monkeypatch, native, forced):
    monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda: native)
    monkeypatch.setenv("LLMBOOK_PRECISION", forced)
    assert resolve_precision("auto", "cpu") == forced
    assert resolve_precision("fp32", "cpu") == "fp32"  # an explicit precision wins
    assert resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setenv("LLMBOOK_PRECISION", "fp16")
    with pytest.raises(ValueError, match="LLMBOOK_PRECISION"):
        resolve_precision("auto", "cpu")


def test_precision_rejects_bad_values():
    with pytest.raises(ValueError, match="precision"):
        autocast("fp16", "cpu")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("float32", "cpu")
    with pytest.raises(ValueError, match="device"):
        autocast("bf16", "no-such-device")
    with pytest.raises(ValueError, match="precision"):
        accumulate_gradients(tiny_model(), [(torch.zeros(1, 2, dtype=torch.long),) * 2],
                             precision="half")  # fmt: skip


def test_bf16_step_is_close_to_fp32(data):
    x = torch.from_numpy(data[: 8 * 17].astype(np.int64)).view(8, 17)
    batch = [(x[:, :-1], x[:, 1:])]
    results = {}
    for precision in ("fp32", "bf16"):
        model = tiny_model()
        seen: list[torch.dtype] = []
        model.lm_head.register_forward_hook(lambda m, i, out, seen=seen: seen.append(out.dtype))
        opt = configure_optimizer(model, cfg())
        loss, norm = train_step(model, opt, batch, lr=1e-3, precision=precision)
        assert seen == [torch.float32 if precision == "fp32" else torch.bfloat16]
        # master weights, their gradients and AdamW's moments stay float32
        assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
        assert all(v.dtype == torch.float32 for st in opt.state.values() for v in st.values()
                   if v.ndim > 0)  # fmt: skip
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        results[precision] = (loss, norm, grad)
    (l32, n32, g32), (l16, n16, g16) = results["fp32"], results["bf16"]
    assert math.isfinite(l16) and l16 != l32  # autocast did change the arithmetic
    # each bf16 rounding is <= 2^-9 relative, and they average out in the sums: the loss
    # moves by 4e-6, the gradient norm by 2e-4, cos(g16, g32) = 1 - 4e-6 (measured)
    assert l16 == pytest.approx(l32, rel=1e-3)
    assert n16 == pytest.approx(n32, rel=1e-2)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.999


def test_bf16_training_and_evaluation_track_fp32():
    seq = np.tile(np.arange(V, dtype=np.uint16), 60)
    runs = {}
    for precision in ("fp32", "bf16"):
        c = cfg(max_steps=30, lr=5e-2, min_lr=5e-3, eval_interval=15, precision=precision)
        model = tiny_model()
        runs[precision] = (train(model, seq, seq[:500], c, progress=False), model)
    h32, h16 = runs["fp32"][0], runs["bf16"][0]
    assert (h32.precision, h16.precision) == ("fp32", "bf16")
    assert all(math.isfinite(v) for v in h16.train_losses + h16.val_losses)
    assert h16.val_losses[-1] < 1.0  # it learns the sequence as fp32 does
    # the untrained model's loss ~ ln 64: bf16 within 1e-3 (measured 2e-6), not equal
    assert h16.val_losses[0] == pytest.approx(h32.val_losses[0], rel=1e-3)
    assert h16.val_losses[0] != h32.val_losses[0]
    # after 30 steps the runs have drifted apart a little (measured 0.2%), not far
    assert h16.val_losses[-1] == pytest.approx(h32.val_losses[-1], rel=0.05)
    model = runs["bf16"][1]
    c16, c32 = cfg(precision="bf16"), cfg(precision="fp32")
    # the same weights scored in bf16 and fp32: measured 6e-4 apart
    e16, e32 = evaluate(model, seq, c16), evaluate(model, seq, c32)
    assert e16 == pytest.approx(e32, rel=1e-2) and e16 != e32


@pytest.mark.parametrize("native", [True, False])
def test_train_records_the_resolved_precision(data, monkeypatch, native):
    monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda: native)
    h = train(
        tiny_model(), data, None, cfg(max_steps=1, warmup_steps=0, precision="auto"), progress=False
    )
    assert h.precision == ("bf16" if native else "fp32")


# ------------------------------------------------------------------------- schedule
def test_lr_at_known_points():
    c = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)  # (0 + 1) / 10 of the peak
    assert lr_at(9, c) == pytest.approx(1.0)  # the warmup's last step reaches the peak
    assert lr_at(10, c) == pytest.approx(1.0)  # cos(0) = 1
    assert lr_at(55, c) == pytest.approx(0.55)  # half way: the mean of peak and floor
    assert lr_at(100, c) == pytest.approx(0.1)
    assert lr_at(1000, c) == 0.1
    warm = [lr_at(s, c) for s in range(11)]
    decay = [lr_at(s, c) for s in range(10, 101)]
    assert all(a < b for a, b in itertools.pairwise(warm[:-1]))
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert lr_at(0, TrainConfig(max_steps=5, warmup_steps=0, lr=2.0)) == 2.0


def test_lr_at_matches_torch_schedulers():
    c = TrainConfig(max_steps=60, warmup_steps=7, lr=0.5, min_lr=0.02)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=c.lr)
    warm = torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=1 / c.warmup_steps, end_factor=1.0, total_iters=c.warmup_steps - 1
    )
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=c.max_steps - c.warmup_steps, eta_min=c.min_lr
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's own deprecation chatter
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], [c.warmup_steps])
        ref = []
        for _ in range(c.max_steps + 1):
            ref.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    ours = [lr_at(s, c) for s in range(c.max_steps + 1)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=0)


def test_lr_at_rejects_bad_input():
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, cfg())
    with pytest.raises(ValueError, match="cfg"):
        lr_at(0, {"lr": 1.0})


# ------------------------------------------------------------------------ optimizer
def test_weight_decay_groups():
    model = tiny_model(bias=True)
    opt = configure_optimizer(model, cfg(weight_decay=0.2))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert any(p is model.wte.weight for p in decay["params"])
    assert any(p is model.blocks[0].ln_1.weight for p in no_decay["params"])
    assert any(p is model.blocks[0].attn.q_proj.bias for p in no_decay["params"])
    # the tied matrix W_U = E^T is one parameter, counted once
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert model.lm_head.weight is model.wte.weight and n == model.num_parameters()


def test_decay_shrinks_matrices_only():
    # with zero gradients Adam's update is 0, so only the decay theta *= 1 - lr*lambda acts
    model = tiny_model(bias=True)
    c = cfg(weight_decay=0.5, warmup_steps=0)
    opt = configure_optimizer(model, c)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = 1 - c.lr * 0.5 if p.ndim >= 2 else 1.0
        torch.testing.assert_close(p.detach(), before[n] * factor, rtol=1e-6, atol=0)


# --------------------------------------------------------------------- one step
def test_accumulation_equals_one_big_batch(data):
    model = tiny_model().double()
    x = torch.from_numpy(data[: 8 * 17].astype(np.int64)).view(8, 17)
    inputs, targets = x[:, :-1], x[:, 1:]
    big = accumulate_gradients(model, [(inputs, targets)])
    g_big = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    small = accumulate_gradients(
        model, [(inputs[i : i + 2], targets[i : i + 2]) for i in (0, 2, 4, 6)]
    )
    assert small == pytest.approx(big, rel=1e-12)
    for g, p in zip(g_big, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    assert max(g.abs().max() for g in g_big) > 1e-3  # the comparison sees real gradients


def test_accumulate_gradients_needs_a_batch():
    with pytest.raises(ValueError, match="batches"):
        accumulate_gradients(tiny_model(), [])


@pytest.mark.parametrize("clip", [1e-3, None])
def test_train_step_clips_the_update(data, clip):
    # plain SGD with lr = 1 moves the parameters by exactly the (clipped) gradient
    model = tiny_model().double()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=123.0)
    x = torch.from_numpy(data[:68].astype(np.int64)).view(4, 17)
    loss, norm = train_step(model, opt, [(x[:, :-1], x[:, 1:])], lr=1.0, grad_clip=clip)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    step = (after - before).norm().item()
    assert opt.param_groups[0]["lr"] == 1.0 and loss > 0
    assert norm > 1e-2  # the raw gradient is far above the clip
    # torch scales by c / (norm + 1e-6), hence rel 1e-5 when clipping (norm ~ 1)
    assert step == pytest.approx(norm if clip is None else clip, rel=1e-9 if clip is None else 1e-5)


def test_train_step_rejects_nonfinite_loss(data):
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    x = torch.from_numpy(data[:34].astype(np.int64)).view(2, 17)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="loss"):
        train_step(model, opt, [(x[:, :-1], x[:, 1:])], lr=0.1)


# ----------------------------------------------------------------------- evaluation
def test_evaluate_is_the_mean_batch_loss_and_restores_mode(data):
    model = tiny_model(dropout=0.5)
    c = cfg(eval_batches=3)
    g = torch.Generator().manual_seed(c.seed)
    model.eval()
    with torch.no_grad():
        ref = []
        for _ in range(3):
            x, y = train_module.get_batch(data, c.batch_size, c.block_size, generator=g)
            ref.append(model(x, y)[1].item())
    model.train()
    value = evaluate(model, data, c)
    assert model.training
    assert value == pytest.approx(sum(ref) / 3, rel=1e-6)
    assert evaluate(model, data, c) == value  # same batches, dropout off: same number


# ------------------------------------------------------------------------------ loop
def test_train_learns_and_fills_history():
    seq = np.tile(np.arange(V, dtype=np.uint16), 60)  # next token = current + 1 (mod V)
    model = tiny_model()
    c = cfg(max_steps=30, lr=5e-2, min_lr=5e-3, eval_interval=15)
    h = train(model, seq, seq[:500], c, progress=False)
    assert h.steps == list(range(1, 31))
    assert len(h.lrs) == len(h.train_losses) == len(h.grad_norms) == len(h.elapsed) == 30
    assert h.val_steps == [0, 15, 30]
    assert h.val_losses[0] == pytest.approx(math.log(V), abs=0.1)  # untrained: near uniform
    assert h.val_losses[-1] < 1.0 and h.train_losses[-1] < 1.0  # measured 0.63 and 0.73
    assert h.tokens_seen[-1] == 30 * c.tokens_per_step
    assert all(b > a for a, b in itertools.pairwise(h.elapsed))
    assert h.tokens_per_second > 0 and h.seconds_per_step > 0
    assert h.lrs == [lr_at(s, c) for s in range(30)]


def test_train_without_validation(data):
    h = train(tiny_model(), data, None, cfg(max_steps=3), progress=False)
    assert h.val_steps == [] and len(h.steps) == 3


def test_train_rejects_bad_input(data):
    model = tiny_model()
    with pytest.raises(ValueError, match="train_data"):
        train(model, data[:CTX], data, cfg(), progress=False)
    with pytest.raises(ValueError, match="train_data"):
        train(model, np.array([], dtype=np.uint16), data, cfg(), progress=False)
    with pytest.raises(ValueError, match="train_data"):
        train(model, list(data), data, cfg(), progress=False)
    with pytest.raises(ValueError, match="val_data"):
        train(model, data, data[:5], cfg(), progress=False)
    with pytest.raises(ValueError, match="block_size"):
        train(model, data, data, cfg(block_size=CTX + 1), progress=False)
    with pytest.raises(ValueError, match="checkpoint_path"):
        train(model, data, data, cfg(), resume=True, progress=False)
    with pytest.raises(ValueError, match="cfg"):
        train(model, data, data, {"max_steps": 3}, progress=False)


def test_progress_bar_respects_tqdm_disable(data, monkeypatch):
    made = []

    class FakeBar:
        def __init__(self, **kw):
            made.append(kw)

        def update(self, n):
            pass

        def set_postfix(self, *a, **kw):
            pass

        def close(self):
            pass

    monkeypatch.setattr(train_module, "_tqdm", lambda: FakeBar)
    one_step = cfg(max_steps=1, warmup_steps=0)
    for value, shown in [(None, True), ("0", True), ("1", False), ("True", False)]:
        if value is None:
            monkeypatch.delenv("TQDM_DISABLE", raising=False)
        else:
            monkeypatch.setenv("TQDM_DISABLE", value)
        made.clear()
        train(tiny_model(), data, None, one_step, progress=True)
        train(tiny_model(), data, None, one_step, progress=False)
        # a shown bar gets no disable=False (which would override TQDM_DISABLE in tqdm's
        # text bar); TQDM_DISABLE hides it explicitly (tqdm's notebook widget ignores it)
        assert ("disable" not in made[0]) if shown else made[0]["disable"] is True, value
        assert made[1]["disable"] is True


# ----------------------------------------------------------------------- checkpoints
def run_split(data, c, path, stop_at, **model_kw):
    """Train to ``stop_at``, then resume a freshly built model and optimizer to the end."""
    first = tiny_model(**model_kw)
    h1 = train(first, data, data[:800], c, checkpoint_path=path, progress=False,
               callback=lambda step, h: step == stop_at)  # fmt: skip
    assert h1.steps[-1] == stop_at
    torch.manual_seed(999)  # disturb the global random state: resuming must restore it
    second = tiny_model(seed=123, **model_kw)  # different initial weights, overwritten
    h2 = train(second, data, data[:800], c, checkpoint_path=path, resume=True, progress=False)
    return second, h2


def same_history(a: History, b: History):
    for name in ("steps", "lrs", "train_losses", "grad_norms", "tokens_seen", "val_steps",
                 "val_losses"):  # fmt: skip
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("dropout, precision", [(0.0, "fp32"), (0.2, "fp32"), (0.2, "bf16")])
def test_resume_is_exact(data, tmp_path, dropout, precision):
    c = cfg(max_steps=8, grad_accum_steps=2, grad_clip=0.05, eval_interval=3, precision=precision)
    straight = tiny_model(dropout=dropout)
    h = train(straight, data, data[:800], c, progress=False)
    assert h.precision == precision
    assert max(h.grad_norms) > c.grad_clip  # clipping was active
    resumed, h2 = run_split(data, c, tmp_path / "ckpt.pt", stop_at=4, dropout=dropout)
    assert h2.val_steps == [0, 3, 6, 8]  # no extra evaluation at the split
    same_history(h, h2)
    assert h2.precision == precision
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_resume_of_a_finished_run_does_nothing(data, tmp_path):
    path = tmp_path / "ckpt.pt"
    c = cfg(max_steps=3)
    model = tiny_model()
    h = train(model, data, data, c, checkpoint_path=path, progress=False)
    before = params(model)
    h2 = train(model, data, data, c, checkpoint_path=path, resume=True, progress=False)
    same_history(h, h2)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_resume_rejects_another_train_config(data, tmp_path):
    path = tmp_path / "ckpt.pt"
    train(tiny_model(), data, None, cfg(max_steps=2), checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_model(), data, None, cfg(max_steps=4, lr=1e-2), checkpoint_path=path,
              resume=True, progress=False)  # fmt: skip
    # max_steps may change (train longer)
    h = train(tiny_model(), data, None, cfg(max_steps=4), checkpoint_path=path, resume=True,
              progress=False)  # fmt: skip
    assert h.steps == [1, 2, 3, 4]


def test_checkpoint_round_trip(data, tmp_path):
    model, c = tiny_model(), cfg(max_steps=2)
    opt = configure_optimizer(model, c)
    h = train(model, data, None, c, progress=False)
    g = torch.Generator().manual_seed(5)
    path = save_checkpoint(tmp_path / "sub" / "c.pt", model, opt, 2, h, c, g)
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]  # no temp file left
    other = tiny_model(seed=1)
    ckpt = load_checkpoint(path, other, configure_optimizer(other, c))
    assert ckpt["step"] == 2 and ckpt["history"] == h
    assert torch.equal(ckpt["generator_state"], g.get_state())
    assert ckpt["model_config"]["d_model"] == 16
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    # a weights-only checkpoint loads without an optimizer, and refuses to give one
    save_checkpoint(path, model, None, 2, h, c, None)
    load_checkpoint(path, tiny_model())
    with pytest.raises(ValueError, match="optimizer"):
        load_checkpoint(path, other, configure_optimizer(other, c))


def test_checkpoint_errors(tmp_path):
    model, c = tiny_model(), cfg()
    path = save_checkpoint(tmp_path / "c.pt", model, None, 0, History(), c, None)
    with pytest.raises(ValueError, match=r"another model config.*d_model"):
        load_checkpoint(path, tiny_model(d_model=32))
    with pytest.raises(ValueError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt", model)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_checkpoint(bad, model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"truncated\.pt"):
        load_checkpoint(truncated, model)
    # a model without a config: the parameter shapes are compared
    toy = nn.Linear(3, 2)
    p2 = save_checkpoint(tmp_path / "toy.pt", toy, None, 0, History(), c, None)
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(p2, nn.Linear(3, 4))
    with pytest.raises(ValueError, match="other parameters"):
        load_checkpoint(p2, nn.Linear(3, 2, bias=False))


def test_history_dict_round_trip():
    h = History(steps=[1], lrs=[0.1], train_losses=[2.0], grad_norms=[1.0], tokens_seen=[64],
                elapsed=[0.5], val_steps=[0], val_losses=[3.0])  # fmt: skip
    assert History.from_dict(h.to_dict()) == h
    assert h.tokens_per_second == 128.0
    with pytest.raises(ValueError, match="keys"):
        History.from_dict({"steps": []})
    h16 = History(steps=[1], precision="bf16")
    assert History.from_dict(h16.to_dict()) == h16
    old = {k: v for k, v in h.to_dict().items() if k != "precision"}  # saved before bf16
    assert History.from_dict(old).precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        History.from_dict({**h.to_dict(), "precision": "auto"})
    with pytest.raises(ValueError, match="keys"):
        History.from_dict({**h.to_dict(), "extra": []})


# ------------------------------------------------------- the book's optimizer (Ch. 8)
def test_configure_optimizer_is_the_books_adamw():
    from llmbook.optim import AdamW

    opt = configure_optimizer(tiny_model(), cfg())
    assert type(opt) is AdamW and opt.defaults["betas"] == cfg().betas


def test_training_with_the_books_adamw_equals_torch_adamw_bit_for_bit(data, monkeypatch):
    # the book's AdamW replays torch's multi-tensor op order: float32 weights, losses and
    # gradient norms must be identical (torch.equal), not merely close
    c = cfg(max_steps=6, eval_interval=100, weight_decay=0.1)
    ours = tiny_model(bias=True)
    h_ours = train(ours, data, None, c, progress=False)
    books = train_module.configure_optimizer

    def torch_adamw(model, cfg):
        groups = books(model, cfg).param_groups
        return torch.optim.AdamW(
            groups, lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps, foreach=True
        )

    monkeypatch.setattr(train_module, "configure_optimizer", torch_adamw)
    ref = tiny_model(bias=True)
    h_ref = train(ref, data, None, c, progress=False)
    assert h_ours.train_losses == h_ref.train_losses and h_ours.grad_norms == h_ref.grad_norms
    for (n, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b), n


def test_lr_at_is_warmup_cosine_with_the_step_counted():
    from llmbook.optim import warmup_cosine

    c = cfg(max_steps=50, warmup_steps=7)
    for s in range(60):
        want = warmup_cosine(
            s, peak_lr=c.lr, min_lr=c.min_lr, warmup_steps=7, total_steps=50, offset=1
        )
        assert lr_at(s, c) == want
