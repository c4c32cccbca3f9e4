"""Tests of llmbook.zoo: recipes, the on-disk cache (hit, corrupt, stale, atomic) and
exact text scoring.

Every test runs with ``LLMBOOK_CACHE`` pointing into pytest's ``tmp_path`` (an autouse
fixture), so the real ``~/.cache`` is never touched. The recipe trained here is tiny
(30,000 training characters, V = 300, one 16-wide layer, 4 steps): it tests the machinery,
not the model. Tolerances: the cache returns the stored float32 weights bit for bit
(torch.equal); CPU training is deterministic, so a retrained entry equals the first one
bit for bit too; text scores are compared in float64 at 1e-10 (sums of ~50 terms).
"""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import llmbook.zoo as zoo
from llmbook.corpus import shakespeare
from llmbook.data import open_tokens
from llmbook.gpt import GPT, GPTConfig
from llmbook.tokenizer import BPETokenizer
from llmbook.train import train
from llmbook.zoo import (
    RECIPES,
    Recipe,
    cache_dir,
    evaluate_text,
    get_recipe,
    load,
    main,
    prepare_data,
    recipe_key,
    token_dtype,
)

TINY = Recipe(
    name="test-tiny",
    description="a tiny recipe for the tests",
    model=dict(block_size=32, n_layer=1, n_head=2, d_model=16),
    train=dict(max_steps=4, batch_size=4, warmup_steps=1, eval_interval=2, eval_batches=2),
    tokenizer="bpe",
    vocab_size=300,
    max_train_chars=30_000,
    max_val_chars=3_000,
)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LLMBOOK_CACHE", str(root))
    yield root
    assert cache_dir() == root, "a test undid LLMBOOK_CACHE and may have used the real cache"


def entry_of(recipe=TINY) -> Path:
    return cache_dir() / "zoo" / f"{recipe.name}-{recipe_key(recipe)}"


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- cache
def test_first_load_trains_then_the_cache_is_used(cache):
    first = load(TINY, device="cpu", progress=False)
    assert not first.from_cache and first.path == entry_of()
    assert first.path.parent.parent == cache  # LLMBOOK_CACHE is honoured
    assert sorted(p.name for p in first.path.iterdir()) == [
        "checkpoint.pt", "manifest.json", "tokenizer.bpe"]  # fmt: skip
    assert sorted(p.name for p in first.path.parent.iterdir()) == [first.path.name]  # no temp
    assert not first.model.training and first.tokenizer.vocab_size == 300
    assert first.history.steps == [1, 2, 3, 4] and first.history.val_steps == [0, 2, 4]
    m = first.metrics
    assert m["val_loss"] == first.history.val_losses[-1] and m["n_parameters"] > 0
    assert 0 < m["val_bpc"] < 12 and m["tokens_per_second"] > 0

    second = load(TINY, device="cpu", progress=False)
    assert second.from_cache
    assert same_weights(first.model, second.model) and not second.model.training
    assert second.history == first.history and second.metrics == first.metrics
    assert second.tokenizer.merges == first.tokenizer.merges


def test_corrupt_checkpoint_is_detected_and_retrained():
    first = load(TINY, device="cpu", progress=False)
    ckpt = first.path / "checkpoint.pt"
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, in the middle of the weights
    ckpt.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        again = load(TINY, device="cpu", progress=False)
    assert not again.from_cache
    assert same_weights(first.model, again.model)  # CPU training is deterministic
    assert load(TINY, device="cpu", progress=False).from_cache  # the entry is good again


@pytest.mark.parametrize("damage", ["garbage manifest", "missing tokenizer"])
def test_unreadable_entry_is_retrained(damage):
    entry = load(TINY, device="cpu", progress=False).path
    if damage == "garbage manifest":
        (entry / "manifest.json").write_text("{not json", encoding="utf-8")
    else:
        (entry / "tokenizer.bpe").unlink()
    with pytest.warns(UserWarning, match="corrupt"):
        assert not load(TINY, device="cpu", progress=False).from_cache


@pytest.mark.parametrize("field, value", [("key", "0123456789abcdef"), ("version", "0.0.1")])
def test_stale_manifest_is_retrained(field, value):
    entry = load(TINY, device="cpu", progress=False).path
    manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    manifest[field] = value
    (entry / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.warns(UserWarning, match=f"stale.*{field}"):
        assert not load(TINY, device="cpu", progress=False).from_cache
    assert load(TINY, device="cpu", progress=False).from_cache


def test_retrain_ignores_a_good_entry(recwarn):
    load(TINY, device="cpu", progress=False)
    assert not load(TINY, device="cpu", progress=False, retrain=True).from_cache
    assert not [w for w in recwarn if "zoo" in str(w.message)]


def test_interrupted_build_leaves_no_entry(monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # undoes only this patch, not the cache fixture's
        patch.setattr(zoo, "save_checkpoint", boom)
        with pytest.raises(KeyboardInterrupt):
            load(TINY, device="cpu", progress=False)
    assert list((cache_dir() / "zoo").iterdir()) == []  # neither an entry nor a temp folder
    assert not load(TINY, device="cpu", progress=False).from_cache


def test_cache_dir_default(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    with monkeypatch.context() as patch:
        patch.delenv("LLMBOOK_CACHE")
        assert cache_dir() == Path.home() / ".cache" / "llmbook"  # computed, not created


# --------------------------------------------------------------------------- recipes
def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="shakespeare-bpe-tiny"):
        load("no-such-model", device="cpu")
    with pytest.raises(ValueError, match="name_or_recipe"):
        get_recipe(3)
    assert get_recipe("shakespeare-bpe-tiny") is RECIPES["shakespeare-bpe-tiny"]


def test_default_recipe_is_valid():
    r = RECIPES["shakespeare-bpe-tiny"]
    mcfg, tcfg = r.model_config(), r.train_config()
    assert (mcfg.vocab_size, mcfg.d_model, mcfg.n_layer, mcfg.n_head) == (1024, 128, 4, 4)
    assert (mcfg.block_size, tcfg.block_size, mcfg.bias) == (128, 128, False)
    assert mcfg.attn_implementation == "fused" and tcfg.max_steps == 200
    assert r.name == "shakespeare-bpe-tiny"


def test_small_and_medium_recipes():
    small, medium = RECIPES["shakespeare-bpe-small"], RECIPES["shakespeare-bpe-medium"]
    assert small.name == "shakespeare-bpe-small" and medium.name == "shakespeare-bpe-medium"
    assert small.data_spec() == medium.data_spec()  # one tokenizer and token files for both
    for r in (small, medium):
        assert r.model_config().vocab_size == r.vocab_size and r.train_config().max_steps > 0
        assert r.train_config().precision in ("bf16", "auto")
    assert medium.model_config().d_model > small.model_config().d_model
    assert medium.model_config().block_size >= small.model_config().block_size


@pytest.mark.parametrize("name", ["shakespeare-bpe-small", "shakespeare-bpe-medium"])
def test_zoo_recipes_take_training_steps(name):
    # the real recipe's model and train config, two steps on random ids (the data and
    # the full run are too slow for a unit test: `make zoo` trains the small one)
    recipe = RECIPES[name]
    mcfg = recipe.model_config()
    tcfg = dataclasses.replace(recipe.train_config(), max_steps=2, warmup_steps=1,
                               batch_size=2, eval_batches=1)  # fmt: skip
    ids = np.random.default_rng(0).integers(0, mcfg.vocab_size, 4 * tcfg.block_size)
    torch.manual_seed(0)
    model = GPT(mcfg)
    before = model.lm_head.weight.detach().clone()
    h = train(model, ids.astype(np.uint16), ids[:1000].astype(np.uint16), tcfg, progress=False)
    assert h.steps == [1, 2] and all(math.isfinite(v) for v in h.train_losses + h.val_losses)
    assert h.val_losses[0] == pytest.approx(math.log(mcfg.vocab_size), rel=0.05)  # untrained
    assert not torch.equal(before, model.lm_head.weight)


def test_recipe_key():
    key = recipe_key(TINY)
    assert len(key) == 16 and int(key, 16) >= 0
    assert recipe_key(Recipe(**{**TINY.__dict__})) == key  # equal recipes, equal keys
    other = Recipe(**{**TINY.__dict__, "train": {**TINY.train, "max_steps": 5}})
    assert recipe_key(other) != key


def test_rewording_the_description_keeps_the_cache_entry():
    first = load(TINY, device="cpu", progress=False)
    reworded = Recipe(**{**TINY.__dict__, "description": "the same model, new words"})
    assert recipe_key(reworded) == recipe_key(TINY)
    again = load(reworded, device="cpu", progress=False)
    assert again.from_cache and again.path == first.path


def test_recipe_key_depends_on_the_version(monkeypatch):
    key = recipe_key(TINY)
    monkeypatch.setattr(zoo, "__version__", "99.0")
    assert recipe_key(TINY) != key


@pytest.mark.parametrize(
    "change, match",
    [({"name": "Bad Name"}, "name"), ({"model": {"width": 3}}, "model"),
     ({"train": {"steps": 3}}, "train"), ({"tokenizer": "words"}, "tokenizer"),
     ({"tokenizer": "bytes"}, "vocab_size"), ({"vocab_size": 100}, "vocab_size"),
     ({"train_split": "dev"}, "train_split"), ({"max_train_chars": 0}, "max_train_chars"),
     ({"train": {"block_size": 64}}, "block_size"), ({"model": {"d_model": 15}}, "d_model")],
)  # fmt: skip
def test_recipe_rejects_bad_fields(change, match):
    with pytest.raises(ValueError, match=match):
        Recipe(**{**TINY.__dict__, **change})


def test_recipe_copies_its_dicts():
    model = dict(TINY.model)
    r = Recipe(**{**TINY.__dict__, "model": model})
    model["d_model"] = 64
    assert r.model["d_model"] == 16


# ------------------------------------------------------------------------------ data
def test_prepare_data_round_trips_the_text(cache, monkeypatch):
    tok, train_path, val_path = prepare_data(TINY, cache)
    dtype = token_dtype(tok)
    assert dtype == "uint16" and tok.vocab_size == 300
    train_ids = open_tokens(train_path, dtype)
    assert tok.decode(train_ids.tolist()) == shakespeare("train")[:30_000]
    assert tok.decode(open_tokens(val_path, dtype).tolist()) == shakespeare("validation")[:3_000]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached data should have been reused")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    tok2, train2, _ = prepare_data(TINY, cache)
    assert train2 == train_path and tok2.merges == tok.merges


def test_prepare_data_rebuilds_corrupt_tokens(cache):
    _, train_path, _ = prepare_data(TINY, cache)
    good = train_path.read_bytes()
    train_path.write_bytes(good[:-2])
    with pytest.warns(UserWarning, match="corrupt"):
        _, again, _ = prepare_data(TINY, cache)
    assert again.read_bytes() == good


def test_prepare_data_rebuilds_headerless_tokens_of_an_older_llmbook(cache):
    _, train_path, _ = prepare_data(TINY, cache)
    good = train_path.read_bytes()
    # What an older llmbook of the same version number wrote: the ids as a flat array with
    # no header, and a manifest whose hashes match it, so only open_tokens can tell.
    train_path.write_bytes(np.asarray(open_tokens(train_path)).astype("<u2").tobytes())
    manifest_path = train_path.parent / "data.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"]["train.bin"] = zoo._sha256(train_path)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.warns(UserWarning, match="corrupt.*not an llmbook token file"):
        _, again, _ = prepare_data(TINY, cache)
    assert again.read_bytes() == good


def test_bytes_recipe_data(cache):
    r = Recipe(**{**TINY.__dict__, "tokenizer": "bytes", "vocab_size": None})
    tok, train_path, _ = prepare_data(r, cache)
    assert tok.vocab_size == 256 and r.model_config().vocab_size == 256
    ids = open_tokens(train_path, token_dtype(tok))
    assert bytes(ids.tolist()) == shakespeare("train")[:30_000].encode("utf-8")


# ---------------------------------------------------------------------- scoring text
def uniform_model(vocab_size, block_size=8):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1,
                          n_head=2, d_model=16))  # fmt: skip
    with torch.no_grad():
        model.wte.weight.zero_()  # tied to the head: every logit is exactly 0
    return model


def test_uniform_model_scores_log2_v_per_token():
    text = "To be, or not to be: that is the question."  # ASCII: one byte per character
    score = evaluate_text(uniform_model(256), BPETokenizer(), text)
    assert (score.tokens, score.characters, score.bytes) == (len(text) - 1,) * 3
    assert score.bits_per_character == pytest.approx(8.0, rel=1e-12)
    assert score.nats_per_token == pytest.approx(math.log(256), rel=1e-12)
    tok = BPETokenizer.train(shakespeare("train")[:20_000], 300)
    ids = tok.encode_ordinary(text)
    score = evaluate_text(uniform_model(300), tok, text)
    first = len(tok.decode(ids[:1]))
    assert score.tokens == len(ids) - 1 < len(text) - 1 and score.characters == len(text) - first
    expected = (len(ids) - 1) * math.log2(300) / (len(text) - first)
    assert score.bits_per_character == pytest.approx(expected, rel=1e-12)


def test_scoring_matches_token_by_token_loop():
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, d_model=16)).double()
    tok, text = BPETokenizer(), "Shall I compare thee to a summer's day? Thou art more lovely"
    ids, T = tok.encode_ordinary(text), 5
    expected = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            start = T * ((t - 1) // T)  # the window holding target t; windows don't overlap
            logits = model(torch.tensor([ids[start:t]]))[0][0, -1]
            expected -= torch.log_softmax(logits, -1)[ids[t]].item()
    score = evaluate_text(model, tok, text, block_size=T, batch_size=3)
    assert score.nats == pytest.approx(expected, rel=1e-10)
    assert (len(ids) - 1) % T  # a partial last window is exercised
    full = evaluate_text(model, tok, text)  # T = 8: more context, a different number
    assert abs(full.nats - expected) > 1e-3


@pytest.mark.parametrize("T,S", [(5, 2), (5, 3), (5, 1), (4, 4)])
def test_sliding_window_matches_token_by_token_loop(T, S):
    # window k starts at k*S; target t is scored by window 0 if t <= T, else by the
    # first window whose end reaches it, k = ceil((t - T) / S), with context x_{kS}..x_{t-1}
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, d_model=16)).double()
    tok, text = BPETokenizer(), "Shall I compare thee to a summer's day? Thou art more lovely"
    ids = tok.encode_ordinary(text)
    expected = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            k = 0 if t <= T else -(-(t - T) // S)
            logits = model(torch.tensor([ids[k * S : t]]))[0][0, -1]
            assert t - k * S >= (T - S + 1 if k else 1)  # the promised context
            expected -= torch.log_softmax(logits, -1)[ids[t]].item()
    score = evaluate_text(model, tok, text, block_size=T, stride=S, batch_size=2)
    assert score.nats == pytest.approx(expected, rel=1e-10)
    assert score.tokens == len(ids) - 1


def test_sliding_window_scores_the_same_tokens_with_more_context():
    # the same tokens and characters are scored; with more context per token the total
    # of a context-dependent model changes (and stays finite)
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, d_model=16))
    text = "Friends, Romans, countrymen, lend me your ears; " * 3
    disjoint = evaluate_text(model, BPETokenizer(), text)
    sliding = evaluate_text(model, BPETokenizer(), text, stride=4)
    assert disjoint.tokens == sliding.tokens and disjoint.characters == sliding.characters
    assert math.isfinite(sliding.nats) and abs(sliding.nats - disjoint.nats) > 1e-4


def test_scoring_counts_a_split_character():
    # with byte tokens the first token is half of "é": that character still counts
    text = "été au soleil"
    score = evaluate_text(uniform_model(256), BPETokenizer(), text)
    assert score.characters == len(text) and score.bytes == len(text.encode("utf-8")) - 1


def test_scoring_rejects_bad_input():
    model = uniform_model(256)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        evaluate_text(model, BPETokenizer(), "a")
    with pytest.raises(ValueError, match="block_size"):
        evaluate_text(model, BPETokenizer(), "abc", block_size=9)
    with pytest.raises(ValueError, match="text"):
        evaluate_text(model, BPETokenizer(), b"abc")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_text(model, BPETokenizer(), "abc", batch_size=0)
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="stride"):
            evaluate_text(model, BPETokenizer(), "abcdef", block_size=8, stride=bad)


def test_token_dtype():
    assert token_dtype(BPETokenizer()) == "uint16"
    big = BPETokenizer(special_tokens=[f"<{i}>" for i in range(2**16)])
    assert token_dtype(big) == "uint32" and np.iinfo(token_dtype(big)).max >= big.vocab_size


# ---------------------------------------------------------------------- command line
@pytest.fixture
def tiny_zoo(monkeypatch):
    """The CLI sees only the tiny recipe (and the real ones stay untouched)."""
    monkeypatch.setattr(zoo, "RECIPES", {TINY.name: TINY})


def test_cli_build_trains_then_reuses(tiny_zoo, capsys):
    assert main(["build", TINY.name, "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{TINY.name}: trained in" in out and str(entry_of()) in out
    assert "val bpc" in out and "precision fp32" in out
    manifest = json.loads((entry_of() / "manifest.json").read_text(encoding="utf-8"))
    assert f"val bpc {manifest['metrics']['val_bpc']:.4f} bits/char" in out
    assert manifest["metrics"]["precision"] == "fp32"
    assert main(["build", TINY.name, TINY.name, "--device", "cpu"]) == 0  # each name once
    out = capsys.readouterr().out
    assert out.count("from the cache") == 1 and str(entry_of()) in out


def test_cli_list(tiny_zoo, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert TINY.name in out and "not built" in out and TINY.description in out
    assert f"cache: {cache_dir()}" in out
    load(TINY, device="cpu", progress=False)
    main(["list"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(TINY.name))
    assert line.split()[1] == "cached"


def test_cli_rejects_unknown_names_before_training(tiny_zoo, capsys):
    assert main(["build", TINY.name, "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo model" in err and "'no-such-model'" in err and TINY.name in err
    assert not (cache_dir() / "zoo").exists()  # nothing was trained
    assert main(["build", TINY.name, "--device", "tpu"]) == 2
    assert "--device" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a command is required
        main([])


def test_cli_runs_as_a_module():
    run = [sys.executable, "-m", "llmbook.zoo"]
    listed = subprocess.run([*run, "list"], capture_output=True, text=True, check=True)
    assert "shakespeare-bpe-small" in listed.stdout and "shakespeare-bpe-tiny" in listed.stdout
    bad = subprocess.run([*run, "build", "no-such-model"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown zoo model" in bad.stderr and bad.stdout == ""


# ------------------------------------------------------------------ the scaling grid
def test_scaling_grid_is_an_isoflop_design_under_one_epoch():
    from llmbook.counting import count_parameters

    names = zoo.GROUPS["scaling-grid"]
    seeds = zoo.SCALING_SEEDS
    points = sum(map(len, zoo.SCALING_BUDGETS.values()))
    assert len(names) == len(set(names)) == points * len(seeds) and len(seeds) >= 2
    train_bytes = len(shakespeare("train").encode("utf-8"))
    specs = set()
    budgets = [c for c, shapes in zoo.SCALING_BUDGETS.items() for _ in shapes for _ in seeds]
    for k, (name, compute) in enumerate(zip(names, budgets, strict=True)):
        r = RECIPES[name]
        assert r.train["seed"] == seeds[k % len(seeds)]
        other = RECIPES[names[k - k % len(seeds)]]  # the point's first seed: same run
        assert {**r.train, "seed": 0} == {**other.train, "seed": 0} and r.model == other.model
        t, n = r.train_config(), count_parameters(r.model_config())
        d = t.max_steps * t.tokens_per_step
        assert 6 * n * d == pytest.approx(compute, rel=0.06)  # whole windows per step
        assert t.max_steps == zoo.SCALING_STEPS and t.precision == "fp32"
        assert t.warmup_steps == zoo.SCALING_STEPS // 10
        assert t.min_lr == pytest.approx(t.lr / 10)  # cosine to 10% of the peak
        assert d < train_bytes  # under one epoch
        specs.add(json.dumps(r.data_spec(), sort_keys=True))
    assert len(specs) == 1 and RECIPES[names[0]].tokenizer == "bytes"  # data shared
    # five or more consecutive shapes per budget: each size appears at up to three budgets
    for shapes in zoo.SCALING_BUDGETS.values():
        assert len(shapes) >= 5 and list(shapes) == list(range(shapes[0], shapes[-1] + 1))


def test_existing_recipes_are_unchanged_by_the_grid():
    small = RECIPES["shakespeare-bpe-small"]
    assert small.train["max_steps"] == 1600 and small.vocab_size == 2048
    assert set(zoo.GROUPS["scaling-grid"]) <= set(RECIPES)


def test_cli_builds_a_group(monkeypatch, capsys):
    monkeypatch.setattr(zoo, "RECIPES", {TINY.name: TINY})
    monkeypatch.setattr(zoo, "GROUPS", {"tiny-group": (TINY.name,)})
    assert main(["list"]) == 0
    assert "tiny-group" in capsys.readouterr().out
    assert main(["build", "tiny-group", "--device", "cpu", "--no-progress"]) == 0
    assert f"{TINY.name}: trained in" in capsys.readouterr().out
    monkeypatch.setattr(zoo, "GROUPS", {"bad-group": ("no-such-model",)})
    assert main(["build", "bad-group"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-model'" in err and "groups: bad-group" in err


# --------------------------------------------------------------- derived recipes
def _finetune_for_tests(recipe, base, device, progress):
    """A derived task for the tests: copy the base, nudge one weight by task_args["shift"]."""
    model = GPT(base.model.config)
    model.load_state_dict(base.model.state_dict())
    with torch.no_grad():
        model.lm_head.weight[0, 0] += recipe.task_args["shift"] + torch.rand(()).item()
    history = zoo.History(steps=[1], train_losses=[0.5], precision="fp32")
    return (
        model,
        history,
        {"shift": recipe.task_args["shift"], "seed_draw": model.lm_head.weight[0, 0].item()},
    )


@pytest.fixture
def derived(monkeypatch):
    monkeypatch.setitem(zoo.DERIVED_TASKS, "test-shift", f"{__name__}:_finetune_for_tests")
    monkeypatch.setitem(RECIPES, TINY.name, TINY)
    return Recipe(
        name="test-tiny-shifted",
        description="the tiny model, one weight shifted",
        model=TINY.model,
        train=dict(max_steps=1, warmup_steps=0, seed=3),
        vocab_size=300,
        max_train_chars=30_000,
        max_val_chars=3_000,
        task="test-shift",
        base=TINY.name,
        task_args={"shift": 2.0},
    )


def test_derived_recipe_trains_from_its_base_and_is_cached(derived):
    first = load(derived, device="cpu", progress=False)
    base = load(TINY, device="cpu", progress=False)
    assert base.from_cache and not first.from_cache
    delta = first.model.lm_head.weight - base.model.lm_head.weight
    assert 2.0 <= delta[0, 0].item() < 3.0 and torch.count_nonzero(delta) == 1
    assert first.metrics["shift"] == 2.0 and first.metrics["precision"] == "fp32"
    assert first.metrics["train_seconds"] > 0
    again = load(derived, device="cpu", progress=False)
    assert again.from_cache and same_weights(again.model, first.model)
    assert again.metrics["seed_draw"] == first.metrics["seed_draw"]  # seeded by train.seed
    ident = derived.identity()
    assert ident["base"] == TINY.name and ident["base_key"] == recipe_key(TINY)
    assert ident["task_args"] == {"shift": 2.0}


def test_derived_recipe_key_follows_its_base(derived, monkeypatch):
    key = recipe_key(derived)
    monkeypatch.setitem(
        RECIPES, TINY.name, dataclasses.replace(TINY, train={**TINY.train, "seed": 9})
    )
    assert recipe_key(derived) != key


def test_derived_recipe_rejects_bad_fields(derived):
    with pytest.raises(ValueError, match="base must name a zoo recipe"):
        dataclasses.replace(derived, base=None)
    with pytest.raises(ValueError, match="base must name a zoo recipe"):
        dataclasses.replace(TINY, base="test-tiny-shifted")
    with pytest.raises(ValueError, match="base must be another recipe"):
        dataclasses.replace(derived, base=derived.name)
    with pytest.raises(ValueError, match="task_args must hold JSON-ready"):
        dataclasses.replace(derived, task_args={"x": object()})
    with pytest.raises(ValueError, match="must use the data fields of its base"):
        load(dataclasses.replace(derived, vocab_size=400), device="cpu", progress=False)


def test_existing_recipes_leave_base_and_task_args_out_of_their_key():
    for recipe in RECIPES.values():
        if recipe.base is None:
            assert "base" not in recipe.to_dict() and "task_args" not in recipe.to_dict()


def test_derived_group_lists_the_recipes_with_a_base_after_their_bases():
    names = list(RECIPES)
    assert set(zoo.GROUPS["derived"]) == {n for n, r in RECIPES.items() if r.base is not None}
    for name in zoo.GROUPS["derived"]:
        assert names.index(RECIPES[name].base) < names.index(name)


def test_cli_builds_an_empty_group(monkeypatch, capsys):
    monkeypatch.setitem(zoo.GROUPS, "nothing", ())
    assert main(["build", "nothing", "--device", "cpu"]) == 0
