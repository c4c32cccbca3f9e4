"""Tests of llmbook.train.save_checkpoint / load_checkpoint to a path or a binary file
object, with and without the history and the train config, always read with
``weights_only=True``; and of lr_at against Hugging Face's cosine schedules."""

import dataclasses
import io
import math
import pickle

import numpy as np
import pytest
import torch
from transformers import (
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
)

from llmbook.gpt import GPT, GPTConfig
from llmbook.train import (
    History,
    TrainConfig,
    configure_optimizer,
    load_checkpoint,
    lr_at,
    save_checkpoint,
    train,
)


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=31, block_size=8, n_layer=1, n_head=2, d_model=16))


def trained_state():
    """A model, its optimizer after one step (non-empty moments), a history and config."""
    cfg = TrainConfig(max_steps=3, batch_size=2, block_size=8, warmup_steps=1, eval_interval=1,
                      eval_batches=1)  # fmt: skip
    model = tiny_model()
    opt = configure_optimizer(model, cfg)
    x = torch.randint(0, 31, (2, 8), generator=torch.Generator().manual_seed(0))
    model(x, x)[1].backward()
    opt.step()
    history = History(steps=[1], lrs=[1e-3], train_losses=[3.4], grad_norms=[1.0],
                      tokens_seen=[16], elapsed=[0.1], val_steps=[0], val_losses=[3.5])  # fmt: skip
    return model, opt, history, cfg


class Target:
    """Where a checkpoint goes: a str path, a Path, an io.BytesIO or an open binary file."""

    def __init__(self, kind: str, tmp_path):
        self.kind, self.path = kind, tmp_path / "ckpt.pt"
        self.buffer = io.BytesIO()

    def for_save(self):
        if self.kind == "bytesio":
            return self.buffer
        if self.kind == "file":
            self.handle = self.path.open("wb")
            return self.handle
        return str(self.path) if self.kind == "str" else self.path

    def done_saving(self):
        if self.kind == "file":
            self.handle.close()

    def for_load(self):
        if self.kind == "bytesio":
            return io.BytesIO(self.buffer.getvalue())
        if self.kind == "file":
            return self.path.open("rb")
        return str(self.path) if self.kind == "str" else self.path


@pytest.mark.parametrize("kind", ["str", "path", "bytesio", "file"])
@pytest.mark.parametrize("with_history", [True, False])
@pytest.mark.parametrize("with_config", [True, False])
@pytest.mark.parametrize("with_optimizer", [True, False])
def test_round_trip(tmp_path, kind, with_history, with_config, with_optimizer):
    model, opt, history, cfg = trained_state()
    target = Target(kind, tmp_path)
    dest = target.for_save()
    returned = save_checkpoint(
        dest, model, opt if with_optimizer else None, 7,
        history if with_history else None, cfg if with_config else None, None,
        with_history=with_history, with_config=with_config,
    )  # fmt: skip
    target.done_saving()
    assert returned is dest if kind in ("bytesio", "file") else returned == target.path

    other = tiny_model(seed=1)
    other_opt = configure_optimizer(other, TrainConfig())
    source = target.for_load()
    ckpt = load_checkpoint(source, other, other_opt if with_optimizer else None)
    if kind == "file":
        source.close()
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert ckpt["step"] == 7
    assert ckpt["history"] == (history if with_history else None)
    assert ckpt["train_config"] == (dataclasses.asdict(cfg) if with_config else None)
    assert ckpt["model_config"]["d_model"] == 16  # the model's config is always kept
    if with_optimizer:
        saved, loaded = opt.state_dict()["state"], other_opt.state_dict()["state"]
        assert saved.keys() == loaded.keys() and len(saved) > 0
        for i in saved:
            assert torch.equal(saved[i]["exp_avg"], loaded[i]["exp_avg"])
    else:
        again, source = tiny_model(), target.for_load()
        with pytest.raises(ValueError, match="no optimizer state"):
            load_checkpoint(source, again, configure_optimizer(again, cfg))
        if kind == "file":
            source.close()


class Boom:
    """Unpickling this runs code: weights_only=True must refuse it."""

    ran = False

    def __reduce__(self):
        return (Boom._explode, ())

    @staticmethod
    def _explode():
        Boom.ran = True
        return {}


@pytest.mark.parametrize("kind", ["bytesio", "path"])
def test_load_is_weights_only(tmp_path, kind):
    buffer = io.BytesIO()
    torch.save({"format": "llmbook-checkpoint 1", "model": Boom()}, buffer)
    assert pickle.loads(pickle.dumps(Boom())) == {} and Boom.ran  # a full unpickler runs it
    Boom.ran = False
    source = io.BytesIO(buffer.getvalue())
    if kind == "path":
        source = tmp_path / "evil.pt"
        source.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="not readable"):
        load_checkpoint(source, tiny_model())
    assert not Boom.ran


def test_file_errors(tmp_path):
    model, _, history, cfg = trained_state()
    with pytest.raises(ValueError, match="binary file"):
        save_checkpoint(io.StringIO(), model, None, 0, history, cfg, None)
    with pytest.raises(ValueError, match="binary file"):
        load_checkpoint(io.StringIO("x"), model)
    with pytest.raises(ValueError, match="path must be a path"):
        save_checkpoint(42, model, None, 0, history, cfg, None)
    with pytest.raises(ValueError, match=r"BytesIO.*not readable"):
        load_checkpoint(io.BytesIO(b"not a checkpoint"), model)
    with (tmp_path / "junk.pt").open("wb") as f:
        f.write(b"junk")
    with (tmp_path / "junk.pt").open("rb") as f, pytest.raises(ValueError, match=r"junk\.pt"):
        load_checkpoint(f, model)
    with pytest.raises(ValueError, match="history must be a History"):
        save_checkpoint(io.BytesIO(), model, None, 0, None, cfg, None)
    with pytest.raises(ValueError, match="cfg must be a TrainConfig"):
        save_checkpoint(io.BytesIO(), model, None, 0, history, None, None)
    with pytest.raises(ValueError, match="with_history"):
        save_checkpoint(io.BytesIO(), model, None, 0, history, cfg, None, with_history="no")


def test_resume_needs_history_and_config(tmp_path):
    data = np.random.default_rng(0).integers(0, 31, 400).astype(np.int64)
    cfg = TrainConfig(max_steps=2, batch_size=2, block_size=8, warmup_steps=1, eval_interval=1,
                      eval_batches=1, lr=1e-3, min_lr=1e-4)  # fmt: skip
    path = tmp_path / "c.pt"
    train(tiny_model(), data, None, cfg, checkpoint_path=path, progress=False)
    model = tiny_model()
    save_checkpoint(path, model, configure_optimizer(model, cfg), 1, None, cfg,
                    torch.Generator(), with_history=False)  # fmt: skip
    with pytest.raises(ValueError, match="cannot resume"):
        train(tiny_model(), data, None, cfg, checkpoint_path=path, resume=True, progress=False)


# ------------------------------------------------------------------- lr_at vs HF
def hf_lrs(make, cfg: TrainConfig, n: int, **kw) -> list[float]:
    """The learning rate a Hugging Face scheduler gives at steps 0..n-1 (stepped as in a
    training loop: read, optimizer.step(), scheduler.step())."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    sched = make(opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps, **kw)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(("W", "S"), [(0, 10), (1, 10), (10, 100), (37, 250), (50, 50)])
@pytest.mark.parametrize("min_lr", [0.0, 6e-5])
def test_lr_at_matches_transformers_cosine(W, S, min_lr):
    # eta_s = eta_max * lambda(s + 1) in warmup, eta_max * lambda(s) for W <= s < S, and
    # both are eta_min at s = S if S > W (if S = W, HF has no decay: its s = S is the peak).
    # Same formulas, evaluated in another order: 1e-12 relative (measured <= 2 ulps).
    cfg = TrainConfig(max_steps=S, warmup_steps=W, lr=6e-4, min_lr=min_lr)
    if min_lr == 0:
        hf = hf_lrs(get_cosine_schedule_with_warmup, cfg, 2 * S + 2)
    else:
        hf = hf_lrs(get_cosine_with_min_lr_schedule_with_warmup, cfg, 2 * S + 2, min_lr=min_lr)
    for s in range(S + 1 if S > W else S):  # for W = S, s = S is past warmup's end only
        want = hf[s + 1] if s < W else hf[s]
        assert math.isclose(lr_at(s, cfg), want, rel_tol=1e-12, abs_tol=1e-20), s
    if W > 0:
        assert hf[0] == 0.0 and lr_at(0, cfg) == cfg.lr / W  # HF's first step does not move
        for s in (W - 1, W) if S > W else (W - 1,):  # ours holds the peak for two steps
            assert math.isclose(lr_at(s, cfg), cfg.lr, rel_tol=1e-12)
    # after S ours stays at min_lr; HF's cosine (num_cycles=0.5) climbs back
    if S > W:
        assert all(lr_at(s, cfg) == min_lr for s in range(S, 2 * S))
        assert all(hf[s] > min_lr + 1e-12 for s in range(S + 1, 2 * S - W))
