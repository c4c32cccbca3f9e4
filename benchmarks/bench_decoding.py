"""Benchmark: the book's decoders (``llmbook.decoding``) against ``transformers``' ``generate``.

Peer: Hugging Face ``GPT2LMHeadModel.generate`` on the same weights. The model is a GPT-2
with random weights in the shape of a zoo recipe (default ``shakespeare-bpe-small``:
V = 2048, context 64, 4 layers of width 128; GPT-2 has biases, the recipe does not),
built by ``transformers`` after ``torch.manual_seed`` and copied into the book's GPT
with ``GPT.from_hf_gpt2``. Two workloads, with the same settings on both sides:

* sampling: ``--batch`` prompts of 16 tokens, ``--new`` new tokens, temperature 0.8,
  top-k 50, top-p 0.9 (``generate(model, ids, n, [Temperature, TopK, TopP])`` against
  ``generate(do_sample=True, temperature=0.8, top_k=50, top_p=0.9)``);
* beam search: ``--beam-batch`` prompts, ``--beams`` beams, length penalty 1.0,
  early stopping False, an end token (id 0), ``--beams`` sequences returned.

Before any timing, the outputs are checked on float64 copies of both models (where the
two implementations' logits agree to ~1e-15, so the float32-cast logits are equal):
sampled tokens with the same seed, beam sequences and beam scores must be equal
(``torch.equal``); exit status 1 otherwise. The timed runs use float32 (where tokens
may differ after a near tie; the number of equal rows is printed, not required).

Reported: median wall time of each workload (interleaved rounds after a warm-up),
tokens per second (generated tokens, beams counted once per returned sequence for beam
search: ``batch * new``), and the ratio transformers / book (>= 1: the book's is as fast).

Run: .venv/bin/python benchmarks/bench_decoding.py [--quick] [--recipe NAME] [--batch N]
     [--new N] [--beams K] [--beam-batch N] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

# bench_gpt.py sits next to this script (on sys.path when run as a script)
from bench_gpt import check, machine_lines
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from llmbook import decoding as dec
from llmbook.gpt import GPT
from llmbook.zoo import get_recipe

PROMPT_LEN = 16
EOS = 0


def build(recipe_name: str, seed: int = 0) -> tuple[GPT2LMHeadModel, GPT]:
    """A random GPT-2 in the recipe's shape, and the book's GPT with its weights."""
    c = get_recipe(recipe_name).model_config()
    cfg = GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_embd=c.d_model,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=c.d_ff,
        bos_token_id=None,
        eos_token_id=None,  # the checks pass EOS explicitly; the timed runs have none
    )
    torch.manual_seed(seed)
    hf_model = GPT2LMHeadModel(cfg).eval()
    return hf_model, GPT.from_hf_gpt2(hf_model).eval()


def sample_pair(hf_model, ours, ids, new, seed):
    """(book, transformers) sampled ids with the same seed and settings."""
    procs = [dec.Temperature(0.8), dec.TopK(50), dec.TopP(0.9)]
    book = dec.generate(
        ours, ids, new, procs, generator=torch.Generator().manual_seed(seed), eos_token_id=EOS
    )
    torch.manual_seed(seed)  # transformers draws from the global generator
    theirs = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=True,
        temperature=0.8,
        top_k=50,
        top_p=0.9,
        max_new_tokens=new,
        eos_token_id=EOS,
        pad_token_id=EOS,
    )
    return book, theirs


def beam_pair(hf_model, ours, ids, new, K):
    """(book, transformers) beam search outputs with the same settings."""
    book = dec.beam_search(ours, ids, new, K, num_return_sequences=K, eos_token_id=EOS)
    theirs = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        num_beams=K,
        num_return_sequences=K,
        length_penalty=1.0,
        early_stopping=False,
        max_new_tokens=new,
        eos_token_id=EOS,
        pad_token_id=EOS,
        return_dict_in_generate=True,
        output_scores=True,
    )
    return book, theirs


def timed(fn, repeats: int) -> dict[str, float]:
    """Median seconds of fn(name) for name in ("book", "transformers"), interleaved."""
    times: dict[str, list[float]] = {"book": [], "transformers": []}
    names = list(times)
    for r in range(repeats + 1):  # one warm-up round
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fn(name)
            if r > 0:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="shakespeare-bpe-small")
    ap.add_argument("--batch", type=int, default=8, help="prompts for sampling")
    ap.add_argument("--new", type=int, default=48, help="new tokens per prompt")
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--beam-batch", type=int, default=2, help="prompts for beam search")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs of each")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.new, args.beam_batch, args.repeats = 2, 8, 1, 2
    for name in ("batch", "new", "beams", "beam_batch", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    print("\n".join(machine_lines()))

    hf_model, ours = build(args.recipe)
    V, T = ours.config.vocab_size, ours.config.block_size
    check(PROMPT_LEN + args.new <= T, f"--new must be at most {T - PROMPT_LEN}")
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (args.batch, PROMPT_LEN), generator=gen)
    beam_ids = ids[: args.beam_batch]

    # 1. same outputs, on float64 copies
    hf64, ours64 = build(args.recipe)
    hf64, ours64 = hf64.double(), GPT.from_hf_gpt2(hf64.double()).eval()
    with torch.no_grad():
        book, theirs = sample_pair(hf64, ours64, ids, args.new, seed=3)
        check(torch.equal(book, theirs), "sampled tokens differ from transformers' (float64)")
        book_b, theirs_b = beam_pair(hf64, ours64, beam_ids, args.new, args.beams)
        check(
            torch.equal(book_b.sequences, theirs_b.sequences)
            and torch.equal(book_b.scores, theirs_b.sequences_scores),
            "beam sequences or scores differ from transformers' (float64)",
        )
    print(
        f"{args.recipe} shape, random GPT-2 weights: float64 sampling ({args.batch} x "
        f"{args.new} tokens) and beam search (K = {args.beams}) equal transformers'"
    )

    # 2. float32 timings
    with torch.no_grad():
        book, theirs = sample_pair(hf_model, ours, ids, args.new, seed=3)
        same_rows = int((book == theirs).all(1).sum()) if book.shape == theirs.shape else 0
        print(f"float32 sampling: {same_rows} of {args.batch} rows equal (informational)")

        def run_sample(name: str) -> None:
            if name == "book":
                dec.generate(
                    ours,
                    ids,
                    args.new,
                    [dec.Temperature(0.8), dec.TopK(50), dec.TopP(0.9)],
                    generator=torch.Generator().manual_seed(3),
                )
            else:
                torch.manual_seed(3)
                hf_model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    temperature=0.8,
                    top_k=50,
                    top_p=0.9,
                    max_new_tokens=args.new,
                    pad_token_id=EOS,
                )

        def run_beam(name: str) -> None:
            if name == "book":
                dec.beam_search(ours, beam_ids, args.new, args.beams)
            else:
                hf_model.generate(
                    beam_ids,
                    attention_mask=torch.ones_like(beam_ids),
                    do_sample=False,
                    num_beams=args.beams,
                    early_stopping=False,
                    max_new_tokens=args.new,
                    pad_token_id=EOS,
                )

        rows = []
        for label, fn, n_tok in (
            (f"sampling, B={args.batch}", run_sample, args.batch * args.new),
            (
                f"beam search, B={args.beam_batch}, K={args.beams}",
                run_beam,
                args.beam_batch * args.new,
            ),
        ):
            med = timed(fn, args.repeats)
            ratio = med["transformers"] / med["book"]
            rows.append(
                f"  {label:<28} book {n_tok / med['book']:9.0f} tok/s, transformers "
                f"{n_tok / med['transformers']:9.0f} tok/s, ratio {ratio:.2f}"
            )
    print(f"median of {args.repeats} runs, {args.new} new tokens each:")
    print("\n".join(rows))
    print("ratio = transformers time / book time (>= 1: the book's is as fast)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
