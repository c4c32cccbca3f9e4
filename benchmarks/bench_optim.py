"""Benchmark: the book's AdamW step (``llmbook.optim.AdamW``) against ``torch.optim.AdamW``.

Peer: ``torch.optim.AdamW(foreach=True)``, the multi-tensor implementation the book's
AdamW follows operation for operation. Both step the parameters of a zoo recipe's model
(``GPT(recipe.model_config())`` with random weights, built after ``torch.manual_seed``),
split into the two groups of ``llmbook.train.configure_optimizer`` (decay on matrices
only), with the recipe's betas, eps and weight decay and a fixed learning rate. Each
step's gradients are random (drawn once per step from a seeded generator, outside the
timed region) and shared by both optimisers. Before any timing is reported, ``--steps``
steps of both must give identical weights (``torch.equal``; float32).

Reported: the median time of one ``optimizer.step()`` of each (interleaved rounds,
after a warm-up), and the ratio torch / book (>= 1 means the book's is as fast).
Exits with status 1 if the weights differ.

Run: .venv/bin/python benchmarks/bench_optim.py [--recipe NAME] [--steps N]
     [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

# bench_gpt.py sits next to this script (on sys.path when run as a script)
from bench_gpt import check, machine_lines

from llmbook.gpt import GPT
from llmbook.optim import AdamW
from llmbook.zoo import get_recipe


def build(recipe_name: str, seed: int = 0) -> tuple[list[torch.nn.Parameter], list[dict]]:
    """The recipe's model parameters and the two weight-decay groups of the book."""
    recipe = get_recipe(recipe_name)
    torch.manual_seed(seed)
    model = GPT(recipe.model_config())
    params = [p for p in model.parameters() if p.requires_grad]
    wd = recipe.train_config().weight_decay
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": wd},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return params, groups


def make_pair(recipe_name: str) -> tuple[dict[str, torch.optim.Optimizer], dict[str, list]]:
    cfg = get_recipe(recipe_name).train_config()
    hyper = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    opts, params_of = {}, {}
    for name in ("book", "torch"):
        params, groups = build(recipe_name)
        if name == "book":
            opts[name] = AdamW(groups, **hyper)
        else:
            opts[name] = torch.optim.AdamW(groups, foreach=True, **hyper)
        params_of[name] = params
    return opts, params_of


def set_grads(params_of: dict[str, list], generator: torch.Generator) -> None:
    ref = params_of["book"]
    grads = [torch.randn(p.shape, generator=generator) * 1e-2 for p in ref]
    for params in params_of.values():
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="shakespeare-bpe-small")
    ap.add_argument("--steps", type=int, default=20, help="steps of the equality check")
    ap.add_argument("--repeats", type=int, default=50, help="timed steps of each")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("\n".join(machine_lines()))

    # 1. same results: --steps steps of both on the same random gradients
    opts, params_of = make_pair(args.recipe)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        set_grads(params_of, gen)
        for opt in opts.values():
            opt.step()
    same = all(
        torch.equal(a, b) for a, b in zip(params_of["book"], params_of["torch"], strict=True)
    )
    check(same, "the book's AdamW and torch.optim.AdamW(foreach=True) give different weights")
    n = sum(p.numel() for p in params_of["book"])
    print(f"{args.recipe}: {n:,} parameters; {args.steps} steps give identical weights")

    # 2. time one step of each, interleaved (A B, B A, ...), after a warm-up
    times: dict[str, list[float]] = {name: [] for name in opts}
    names = list(opts)
    for r in range(args.repeats + 3):
        set_grads(params_of, gen)
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.perf_counter()
            opts[name].step()
            dt = time.perf_counter() - t0
            if r >= 3:
                times[name].append(dt)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name in names:
        print(f"  {name:>5} AdamW step: {med[name] * 1e3:8.3f} ms (median of {args.repeats})")
    print(f"ratio torch / book: {med['torch'] / med['book']:.2f} (>= 1: the book's is as fast)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
