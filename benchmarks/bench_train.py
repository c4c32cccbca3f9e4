"""Benchmark: the training loop ``llmbook.train.train`` against a bare loop, on a zoo recipe.

Peer: the loop a reader writes by hand (as in nanoGPT): per step, set the learning rate
from ``lr_at``, ``zero_grad(set_to_none=True)``, draw the micro-batches with
``llmbook.data.get_batch``, forward and loss under ``llmbook.train.autocast`` at the
recipe's precision, backward, clip the gradient norm, ``optimizer.step()``, and read the
loss once (``float``). Both use the recipe's model (``GPT(recipe.model_config())`` built
right after ``torch.manual_seed(seed)``, as the zoo does), its training tokens
(``llmbook.zoo.prepare_data``; ``--random-data``: random ids instead), the optimizer of
``configure_optimizer``, the same schedule, clipping, batch generator seed and precision,
for ``--steps`` steps (the schedule's ``max_steps`` is set to it). Neither evaluates:
``train`` gets ``val_data=None``, which skips its evaluations (at step 0, every
``eval_interval`` and at the end), and no checkpoint path, so it saves nothing. The two
loss trajectories must be identical (bitwise on the CPU; within 1e-2 on a GPU, whose
backward kernels are not deterministic) before any timing is reported.

Reported: tokens/s of each (wall time of the whole call, optimizer construction
included, model construction excluded; median of interleaved repeats after a short
warm-up), the overhead of ``train`` over the bare loop, and the achieved FLOP/s
(``llmbook.counting.flops_per_token(training=True, include_head=True)``: 6N for the N
non-embedding parameters + attention 6*L*T*d + output head 6*d*V, per token) as a fraction
of the ``torch.mm`` ceiling measured in the same run in the precision used (float32, and
bfloat16 too when the recipe trains in bf16). Exits with status 1 if the trajectories differ.

Run: .venv/bin/python benchmarks/bench_train.py [--recipe NAME] [--steps N] [--repeats N]
     [--precision fp32|bf16|auto] [--random-data] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch

# bench_gpt.py sits next to this script (on sys.path when run as a script)
from bench_gpt import ceiling_line, check, machine_lines, matmul_ceiling, sync

from llmbook import get_device
from llmbook.counting import count_parameters, flops_per_token
from llmbook.data import get_batch, open_tokens
from llmbook.gpt import GPT
from llmbook.train import (
    PRECISIONS,
    TrainConfig,
    autocast,
    configure_optimizer,
    lr_at,
    resolve_precision,
    train,
)
from llmbook.zoo import cache_dir, get_recipe, prepare_data, token_dtype


def bare_loop(
    model: torch.nn.Module,
    data: np.ndarray,
    cfg: TrainConfig,
    precision: str,
    device: torch.device,
) -> list[float]:
    """The peer: the training loop written out, no evaluation, no history, no checks."""
    optimizer = configure_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    k = cfg.grad_accum_steps
    losses = []
    model.train()
    for step in range(cfg.max_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        total = None
        for _ in range(k):
            x, y = get_batch(
                data, cfg.batch_size, cfg.block_size, generator=generator, device=device
            )
            with autocast(precision, device):
                _, loss = model(x, y)
            loss = loss.float()
            (loss / k).backward()
            total = loss.detach() if total is None else total + loss.detach()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(float(total) / k)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="shakespeare-bpe-small", help="zoo recipe name")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 100)")
    parser.add_argument("--repeats", type=int, help="timed runs of each loop (default 3)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="override the recipe's precision"
    )
    parser.add_argument(
        "--random-data",
        action="store_true",
        help="train on 1,000,000 random ids instead of the recipe's tokens",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: defaults of 10 steps, 1 repeat"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = 10 if args.quick else 100
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")

    recipe = get_recipe(args.recipe)
    mcfg = recipe.model_config()
    base = recipe.train_config()
    cfg = dataclasses.replace(
        base,
        max_steps=args.steps,
        warmup_steps=min(base.warmup_steps, args.steps),
        precision=base.precision if args.precision is None else args.precision,
    )
    device = get_device()
    precision = resolve_precision(cfg.precision, device)
    if args.random_data:
        rng = np.random.default_rng(0)
        data = rng.integers(0, mcfg.vocab_size, 1_000_000).astype(np.uint32)
        source = "1,000,000 random ids"
    else:
        tokenizer, train_path, _ = prepare_data(recipe, cache_dir())
        data = open_tokens(train_path, token_dtype(tokenizer))
        source = f"{len(data):,} tokens of {recipe.train_split!r}"

    for line in machine_lines(extra=f", device {device}"):
        print(line)
    ceilings = {"fp32": matmul_ceiling(torch.float32, device, repeats=2 if args.quick else 5)}
    if precision == "bf16":
        ceilings["bf16"] = matmul_ceiling(torch.bfloat16, device, repeats=2 if args.quick else 5)
    for name, (best, rates) in ceilings.items():
        print(ceiling_line({"fp32": "float32", "bf16": "bfloat16"}[name], best, rates))

    def fresh_model() -> GPT:
        torch.manual_seed(cfg.seed)  # the zoo's initialisation
        return GPT(mcfg).to(device)

    def run_train(c: TrainConfig) -> tuple[float, list[float], float]:
        model = fresh_model()
        sync(device)
        start = time.perf_counter()
        history = train(model, data, None, c, progress=False)
        sync(device)
        return time.perf_counter() - start, history.train_losses, history.tokens_per_second

    def run_bare(c: TrainConfig) -> tuple[float, list[float]]:
        model = fresh_model()
        sync(device)
        start = time.perf_counter()
        losses = bare_loop(model, data, c, precision, device)
        sync(device)
        return time.perf_counter() - start, losses

    warm = dataclasses.replace(cfg, max_steps=3, warmup_steps=min(cfg.warmup_steps, 3))
    run_train(warm)
    run_bare(warm)
    times: dict[str, list[float]] = {"train": [], "bare": []}
    inner_tps = []
    for r in range(args.repeats):
        for name in ("train", "bare") if r % 2 == 0 else ("bare", "train"):
            if name == "train":
                t, losses_train, tps = run_train(cfg)
                inner_tps.append(tps)
            else:
                t, losses_bare = run_bare(cfg)
            times[name].append(t)
        gap = max(abs(a - b) for a, b in zip(losses_train, losses_bare, strict=True))
        if device.type == "cpu":
            check(losses_train == losses_bare, f"loss trajectories differ (max |diff| {gap:.2e})")
        else:
            check(gap < 1e-2, f"loss trajectories differ by up to {gap:.2e} (tolerance 1e-2)")

    t = {k: statistics.median(v) for k, v in times.items()}
    tokens = cfg.tokens_per_step * cfg.max_steps
    tps = {k: tokens / s for k, s in t.items()}
    fpt = flops_per_token(mcfg, cfg.block_size, training=True, include_head=True)
    ceiling = ceilings[precision][0]
    overhead = t["train"] / t["bare"] - 1
    print(
        f"\nrecipe {recipe.name!r}: {mcfg.n_layer} layers, {mcfg.n_head} heads, d_model"
        f" {mcfg.d_model}, V {mcfg.vocab_size}, attention {mcfg.attn_implementation};"
        f" batch {cfg.batch_size} x {cfg.block_size} x {cfg.grad_accum_steps} accumulation,"
        f" {precision} (asked: {cfg.precision!r}, recipe: {base.precision!r})"
    )
    print(
        f"{cfg.max_steps} steps ({tokens:,} tokens) on {source}; no evaluation in either loop;"
        f" median of {args.repeats}, interleaved"
    )
    same = "identical (bitwise)" if losses_train == losses_bare else f"max |diff| {gap:.1e}"
    print(
        f"loss trajectories: {same}; step 1 {losses_train[0]:.4f},"
        f" step {cfg.max_steps} {losses_train[-1]:.4f}"
    )
    print(
        f"FLOPs counted: {fpt / 1e6:.2f} MFLOP/token = 6N (N ="
        f" {count_parameters(mcfg, non_embedding=True):,} non-embedding params)"
        f" + attention 6*L*T*d + head 6*d*V"
    )
    for name, label in (("train", "llmbook.train.train"), ("bare", "bare loop")):
        gflops = fpt * tps[name] / 1e9
        print(
            f"  {label:<20} {t[name]:7.2f} s, {tps[name]:9,.0f} tokens/s, {gflops:6.1f} GFLOP/s"
            f" = {gflops / ceiling:5.1%} of the {precision} matmul ceiling"
        )
    print(
        f"  (train's own History.tokens_per_second, step time only:"
        f" {statistics.median(inner_tps):,.0f} tokens/s)"
    )
    print(f"overhead of train() over the bare loop: {overhead:+.1%} (requirement < 10%)")


if __name__ == "__main__":
    main()
