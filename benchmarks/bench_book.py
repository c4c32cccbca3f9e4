"""Benchmark: the book's runtime budget, every chapter and the zoo build, timed in one run.

The peer is the budget itself: at most 90 s of work per chapter and 20 minutes for the
whole book on a 2-core CPU of the slow kind (AVX2, no native bfloat16, so float32), and
the zoo recipes the chapters load, trained from an empty cache, timed separately (the
zoo's own budget is 25 minutes for all recipes; its CPU model should train in 7 and
Chapter 10's scaling grid in 8).

What is timed, in this order, with the environment the test run uses (``LLMBOOK_DEVICE=cpu``,
``TQDM_DISABLE=1``, ``PYTHONHASHSEED=0``) and a fresh, empty ``LLMBOOK_CACHE``:

1. ``python -m llmbook.zoo build NAME`` for each recipe or group in ``--zoo`` (default: every
   model the chapters load, the scaling grid included), in a subprocess: data preparation,
   training and scoring; the training time alone is read from the entries' manifests;
2. each chapter notebook, executed top to bottom on a fresh kernel (``nbclient``) from a
   copy, so the committed notebooks are not touched; a chapter's time includes its
   kernel start (about a second).

The table gives seconds per chapter against the budget and exits with status 1 when a
chapter, the book, the zoo's CPU model or the grid is over budget (status 2 when a notebook fails).
``--fp32`` sets ``LLMBOOK_PRECISION=fp32``, so a CPU with native bfloat16 trains as the slow
kind does (its float32 is still faster than the slow kind's: the float32 matmul ceiling
measured in the same run is printed, so the times can be compared across machines; the
slow kind's reference ceiling, 144 GFLOP/s, was measured on a 2-core AMD EPYC with AVX2).

Run: .venv/bin/python benchmarks/bench_book.py [--fp32] [--chapters 01 07 ...]
     [--zoo NAME ...] [--no-zoo]
Not part of ``make test`` (a budget is a measurement, not a test); ``make budget`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch

# bench_gpt.py sits next to this script (on sys.path when run as a script)
from bench_gpt import cpu_name, matmul_ceiling
from nbclient import NotebookClient

from llmbook import __version__
from llmbook.train import resolve_precision
from llmbook.zoo import GROUPS

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_BUDGET_S = 90.0
BOOK_BUDGET_S = 20 * 60.0
ZOO_MODEL_BUDGET_S = 7 * 60.0  # training time of the book's CPU model
ZOO_BUDGET_S = 25 * 60.0  # all recipes, build included
GRID_BUDGET_S = 8 * 60.0  # Chapter 10's scaling grid, training time of all its runs
SLOW_KIND_FP32_GFLOPS = 144.0
RUN_ENV = {"LLMBOOK_DEVICE": "cpu", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}


def build_zoo(name: str) -> tuple[float, float]:
    """Build one recipe or group from the (empty) cache in a subprocess: (wall s, training s)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "llmbook.zoo", "build", name, "--no-progress"],
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    trained = 0.0
    for member in GROUPS.get(name, (name,)):
        (entry,) = (Path(os.environ["LLMBOOK_CACHE"]) / "zoo").glob(f"{member}-*")
        metrics = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))["metrics"]
        trained += float(metrics["train_seconds"])
        if name == member:
            print(
                f"  {name}: {metrics['val_bpc']:.4f} bits/char, trained in "
                f"{metrics['train_seconds']:.0f} s ({metrics['precision']})",
                flush=True,
            )
    if name in GROUPS:
        print(f"  {name}: {len(GROUPS[name])} recipes trained in {trained:.0f} s", flush=True)
    return wall, trained


def run_chapter(path: Path) -> float:
    """Execute a copy of one chapter notebook on a fresh kernel; return its wall seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fp32", action="store_true", help="train in float32 (LLMBOOK_PRECISION)")
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter numbers (default all)")
    parser.add_argument(
        "--zoo",
        nargs="*",
        default=[
            "shakespeare-bpe-small",
            "shakespeare-bpe-draft",
            "shakespeare-bpe-rope",
            "needle-bytes-rope",
            "scaling-grid",
            "derived",
        ],
        help="recipes or groups",
    )
    parser.add_argument("--no-zoo", action="store_true", help="use the existing cache instead")
    args = parser.parse_args()

    os.environ.update(RUN_ENV)
    if args.fp32:
        os.environ["LLMBOOK_PRECISION"] = "fp32"
    chapters = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        chapters = [p for p in chapters if p.name[:2] in set(args.chapters)]
    precision = resolve_precision("auto", "cpu")
    fp32, _ = matmul_ceiling(torch.float32, torch.device("cpu"))
    print(f"llmbook {__version__}, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(
        f"training precision: {precision}; float32 matmul ceiling {fp32:.0f} GFLOP/s "
        f"({fp32 / SLOW_KIND_FP32_GFLOPS:.2f}x the slow kind's {SLOW_KIND_FP32_GFLOPS:.0f})",
        flush=True,
    )

    over: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llmbook-budget-") as cache:
        if not args.no_zoo:
            os.environ["LLMBOOK_CACHE"] = cache
            print("zoo (empty cache):", flush=True)
            zoo_total = 0.0
            for name in args.zoo:
                wall, trained = build_zoo(name)
                zoo_total += wall
                if name == "shakespeare-bpe-small" and trained > ZOO_MODEL_BUDGET_S:
                    over.append(f"{name} trained in {trained:.0f} s > {ZOO_MODEL_BUDGET_S:.0f} s")
                if name == "scaling-grid" and trained > GRID_BUDGET_S:
                    over.append(f"{name} trained in {trained:.0f} s > {GRID_BUDGET_S:.0f} s")
            print(f"  zoo build total {zoo_total:.0f} s (budget {ZOO_BUDGET_S:.0f} s)")
            if zoo_total > ZOO_BUDGET_S:
                over.append(f"zoo build {zoo_total:.0f} s > {ZOO_BUDGET_S:.0f} s")
        print(f"{'chapter':<28}{'seconds':>9}{'budget':>8}", flush=True)
        total = 0.0
        for path in chapters:
            try:
                secs = run_chapter(path)
            except Exception as err:  # a failing notebook is not a budget result
                print(f"{path.stem:<28} FAILED: {type(err).__name__}: {err}"[:400])
                return 2
            total += secs
            flag = "" if secs <= CHAPTER_BUDGET_S else "  OVER"
            print(f"{path.stem:<28}{secs:>9.1f}{CHAPTER_BUDGET_S:>8.0f}{flag}", flush=True)
            if flag:
                over.append(f"{path.stem} {secs:.0f} s > {CHAPTER_BUDGET_S:.0f} s")
        print(f"{'book':<28}{total:>9.1f}{BOOK_BUDGET_S:>8.0f}")
        if total > BOOK_BUDGET_S:
            over.append(f"book {total:.0f} s > {BOOK_BUDGET_S:.0f} s")
    print("over budget: " + "; ".join(over) if over else "all within budget")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
