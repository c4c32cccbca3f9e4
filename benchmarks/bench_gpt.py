"""Benchmark: llmbook.gpt.GPT against Hugging Face GPT-2, training step and greedy generation.

Peer: ``transformers.GPT2LMHeadModel`` built from a ``GPT2Config`` with random weights
(nothing is downloaded), its default attention (``sdpa``); ours is the same GPT-2
architecture (learned positions, pre-LN LayerNorm, tanh-GELU, biases, tied embeddings,
``attn_implementation="fused"``) with the peer's weights copied in by
``GPT.from_hf_gpt2_state_dict``. Config: 4 layers, 4 heads, d_model 256, vocabulary 256
(bytes), no dropout, float32, CPU.

1. Training step: forward, cross-entropy over all B*T positions, backward,
   ``torch.optim.AdamW`` step, ``zero_grad(set_to_none=True)``; batch 16 x 256 tokens.
   A second peer line: the same HF model with ``activation_function="gelu_pytorch_tanh"``
   (torch's one-kernel tanh-GELU instead of GPT-2's ``gelu_new``, which HF writes out in
   tensor ops); the requirement is stated against the default GPT-2 model.
   Before timing, both models take the same three AdamW steps on the same batch from the
   same weights and their losses must agree to 1e-4 (and the initial logits to 1e-4).
   Achieved GFLOP/s counts ``llmbook.counting.flops_per_token(training=True,
   include_head=True)``: 6N (N = non-embedding parameters) + 6 n_layer T d_model
   (attention scores and mixing, causal average) + 6 d_model V (the output head), per token.
   It is compared with the float32 matmul ceiling (the best ``torch.mm`` rate over a few
   shapes) measured in the same run.
2. Greedy generation of 256 tokens after a 16-token prompt, batch 1: ours with its KV
   cache, ours without (``use_cache=False``, every step re-reads the whole prefix) and
   ``GPT2LMHeadModel.generate`` (greedy, with its cache). The context is 272 here, since
   16 + 256 tokens exceed 256 (only the position table grows), and the weights are drawn
   with std 0.1 (GPT-2's 0.02 makes greedy decoding repeat one token, which would make
   the identity check vacuous). The three token sequences must be identical. Also timed:
   the single-token forwards with a cache that generation makes (the per-token floor),
   ours (``GPT._logits``) and HF's (``model(ids, past_key_values=cache)``), one by one.

Times are medians of interleaved repeats (ours, peer; peer, ours; ...) after a warm-up.
Exits with status 1 if a correctness check fails.

Run: .venv/bin/python benchmarks/bench_gpt.py [--quick] [--repeats N] [--gen-repeats N]
     [--no-cache-repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformers
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from llmbook import __version__
from llmbook.attention import KVCache
from llmbook.counting import count_parameters, flops_per_token
from llmbook.gpt import GPT, GPTConfig

V, N_LAYER, N_HEAD, D_MODEL, CONTEXT, BATCH = 256, 4, 4, 256, 256, 16
PROMPT, NEW_TOKENS = 16, 256
#: (m, k, n) of the matmuls timed for the ceiling: the model's own shapes and two squares.
MATMUL_SHAPES = ((4096, 256, 768), (4096, 256, 1024), (4096, 1024, 256), (1024,) * 3, (2048,) * 3)


# ------------------------------------------------------------------------ helpers
def check(ok: bool, message: str) -> None:
    """Stop with exit status 1 when a correctness check fails."""
    if not ok:
        sys.exit(f"CHECK FAILED: {message}")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def machine_lines(extra: str = "") -> list[str]:
    """The versions and machine lines every benchmark here prints first."""
    return [
        f"llmbook {__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, Python {platform.python_version()}{extra}",
        f"{platform.platform()}, {cpu_name()}, torch threads {torch.get_num_threads()}",
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds; the order
    is reversed every other round (A B, B A, ...) so neither always runs first."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_ceiling(
    dtype: torch.dtype, device: torch.device, repeats: int = 5
) -> tuple[float, dict[tuple[int, int, int], float]]:
    """The best ``torch.mm`` rate (GFLOP/s, 2mkn per product) over :data:`MATMUL_SHAPES`,
    each timed as the best of ``repeats`` batches of products lasting about 50 ms."""
    g = torch.Generator(device=device).manual_seed(0)
    rates = {}
    for m, k, n in MATMUL_SHAPES:
        a = torch.randn(m, k, generator=g, device=device).to(dtype)
        b = torch.randn(k, n, generator=g, device=device).to(dtype)
        out = torch.empty(m, n, device=device, dtype=dtype)
        torch.mm(a, b, out=out)
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        inner = max(1, int(0.05 / max(time.perf_counter() - start, 1e-6)))
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b, out=out)
            sync(device)
            best = min(best, (time.perf_counter() - start) / inner)
        rates[(m, k, n)] = 2 * m * k * n / best / 1e9
    return max(rates.values()), rates


def ceiling_line(name: str, best: float, rates: dict[tuple[int, int, int], float]) -> str:
    shapes = ", ".join(f"{m}x{k}@{k}x{n} {r:.0f}" for (m, k, n), r in rates.items())
    return f"{name} matmul ceiling {best:.1f} GFLOP/s (torch.mm, GFLOP/s by shape: {shapes})"


# ------------------------------------------------------------------------- models
def build_pair(context: int, init_std: float) -> tuple[GPT, GPT2LMHeadModel]:
    """HF GPT-2 with random weights (seeded) and our GPT with the same weights."""
    torch.manual_seed(0)
    hf_cfg = GPT2Config(
        vocab_size=V,
        n_positions=context,
        n_embd=D_MODEL,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=init_std,
        bos_token_id=None,  # GPT-2's 50256 lies outside a byte vocabulary
        eos_token_id=None,
    )
    hf = GPT2LMHeadModel(hf_cfg)
    cfg = GPTConfig(
        vocab_size=V,
        block_size=context,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        d_model=D_MODEL,
        positional="learned",
        norm="layernorm",
        prenorm=True,
        activation="gelu_tanh",  # GPT-2's "gelu_new"
        bias=True,
        tie_embeddings=True,
        dropout=0.0,
        attn_implementation="fused",
    )
    ours = GPT.from_hf_gpt2_state_dict(hf.state_dict(), cfg)
    return ours, hf


def hf_loss(hf: GPT2LMHeadModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The peer's loss on exactly our targets: cross-entropy over all B*T positions.

    (``labels=x`` would make HF shift inside and score T-1 positions per row.)"""
    logits = hf(input_ids=x).logits
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def ours_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, y)[1]  # type: ignore[return-value]


def training_step(loss_fn, model, opt, x, y) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


# ----------------------------------------------------------------------- training
def bench_training(repeats: int, device: torch.device, ceiling: float) -> bool:
    ours, hf = build_pair(CONTEXT, init_std=0.02)
    # A second peer: the same HF model with torch's one-kernel tanh-GELU
    # ("gelu_pytorch_tanh", the function GPT-2's "gelu_new" writes out in eight tensor ops).
    fast_cfg = copy.deepcopy(hf.config)
    fast_cfg.activation_function = "gelu_pytorch_tanh"
    hf_fast = GPT2LMHeadModel(fast_cfg)
    hf_fast.load_state_dict(hf.state_dict())
    models = {"ours": ours, "hf": hf, "hf_fast": hf_fast}
    g = torch.Generator().manual_seed(0)
    window = torch.randint(0, V, (BATCH, CONTEXT + 1), generator=g).to(device)
    x, y = window[:, :-1].contiguous(), window[:, 1:].contiguous()

    steps, diffs = {}, {}
    for name, model in models.items():
        model.to(device).train()
        with torch.no_grad():
            logits = model(x)[0] if name == "ours" else model(input_ids=x).logits
        if name == "ours":
            ref = logits
        diffs[name] = (logits - ref).abs().max().item()
        check(diffs[name] < 1e-4, f"{name}: initial logits differ by {diffs[name]:.2e} (1e-4)")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = ours_loss if name == "ours" else hf_loss
        steps[name] = training_step(loss_fn, model, opt, x, y)
    # the same three AdamW steps from the same weights on the same batch: the checked warm-up
    losses = {name: [float(step()) for _ in range(3)] for name, step in steps.items()}
    gap = max(
        abs(a - b)
        for name in ("hf", "hf_fast")
        for a, b in zip(losses["ours"], losses[name], strict=True)
    )
    check(gap < 1e-4, f"training losses differ: {losses} (tolerance 1e-4)")

    t = interleaved(steps, repeats, device)
    tokens = BATCH * CONTEXT
    cfg = ours.config
    fpt = flops_per_token(cfg, CONTEXT, training=True, include_head=True)
    n_non_emb = count_parameters(cfg, non_embedding=True)
    gflops = {k: fpt * tokens / s / 1e9 for k, s in t.items()}
    ratio = t["hf"] / t["ours"]
    print(
        f"\n1. training step: batch {BATCH} x {CONTEXT} tokens, {N_LAYER} layers, {N_HEAD} heads,"
        f" d_model {D_MODEL}, V {V}, float32, AdamW; median of {repeats}, interleaved"
    )
    print(
        f"   same computation: initial logits max |diff| vs ours: HF {diffs['hf']:.1e},"
        f" HF fast-GELU {diffs['hf_fast']:.1e}; losses over 3 AdamW steps (ours/HF/HF fast-GELU)"
    )
    print("   " + ", ".join("/".join(f"{losses[n][i]:.5f}" for n in models) for i in range(3)))
    print(
        f"   FLOPs counted: {fpt / 1e6:.2f} MFLOP/token = 6N (N = {n_non_emb:,} non-embedding"
        f" params) + attention 6*L*T*d + head 6*d*V; {fpt * tokens / 1e9:.1f} GFLOP/step"
    )
    labels = {
        "ours": "ours (llmbook.gpt.GPT)",
        "hf": "HF GPT2LMHeadModel",
        "hf_fast": "HF, gelu_pytorch_tanh",
    }
    for name, label in labels.items():
        print(
            f"   {label:<24} {t[name] * 1e3:8.1f} ms/step, {tokens / t[name]:9,.0f} tokens/s,"
            f" {gflops[name]:6.1f} GFLOP/s = {gflops[name] / ceiling:5.1%} of the matmul ceiling"
        )
    print(
        f"   ratio HF/ours {ratio:.2f}x (requirement >= 1.25x);"
        f" HF with gelu_pytorch_tanh/ours {t['hf_fast'] / t['ours']:.2f}x"
    )
    return ratio >= 1.25


# --------------------------------------------------------------------- generation
@torch.inference_mode()
def bench_generation(repeats: int, no_cache_repeats: int, device: torch.device) -> bool:
    ours, hf = build_pair(PROMPT + NEW_TOKENS, init_std=0.1)
    ours.to(device).eval()
    hf.to(device).eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, V, (1, PROMPT), generator=g).to(device)
    mask = torch.ones_like(prompt)

    def gen_cache() -> torch.Tensor:
        return ours.generate(prompt, NEW_TOKENS, greedy=True, use_cache=True)

    def gen_no_cache() -> torch.Tensor:
        return ours.generate(prompt, NEW_TOKENS, greedy=True, use_cache=False)

    def gen_hf() -> torch.Tensor:
        return hf.generate(
            prompt,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            use_cache=True,
            pad_token_id=0,
        )

    a, b, c = gen_cache(), gen_no_cache(), gen_hf()  # also the warm-up
    check(a.shape == (1, PROMPT + NEW_TOKENS), f"ours produced shape {tuple(a.shape)}")
    check(torch.equal(a, b), "ours with and without the KV cache produce different tokens")
    check(torch.equal(a, c), "ours and HF generate produce different tokens")
    distinct = len(set(a[0, PROMPT:].tolist()))

    t = interleaved({"cache": gen_cache, "hf": gen_hf}, repeats, device)
    t.update(interleaved({"no_cache": gen_no_cache}, no_cache_repeats, device))

    # The floor: the single-token forwards with a cache that generation makes (after the
    # prompt, at positions 16..270), timed one by one without generate's loop around them.
    def ours_floor() -> list[float]:
        caches = [KVCache(ours.config.block_size) for _ in ours.blocks]
        nxt = ours._logits(prompt, caches, last_only=True)[:, -1].argmax(-1, keepdim=True)
        out = []
        for _ in range(NEW_TOKENS - 1):
            sync(device)
            start = time.perf_counter()
            nxt = ours._logits(nxt, caches, last_only=True)[:, -1].argmax(-1, keepdim=True)
            sync(device)
            out.append(time.perf_counter() - start)
        return out

    def hf_floor() -> list[float]:
        out_hf = hf(input_ids=prompt, past_key_values=DynamicCache(), use_cache=True)
        cache, nxt = out_hf.past_key_values, out_hf.logits[:, -1].argmax(-1, keepdim=True)
        out = []
        for _ in range(NEW_TOKENS - 1):
            sync(device)
            start = time.perf_counter()
            o = hf(input_ids=nxt, past_key_values=cache, use_cache=True)
            cache, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
            sync(device)
            out.append(time.perf_counter() - start)
        return out

    floors: dict[str, list[float]] = {"ours": [], "hf": []}
    for r in range(max(1, repeats // 2)):
        for name, fn in (("ours", ours_floor), ("hf", hf_floor))[:: 1 if r % 2 == 0 else -1]:
            floors[name] += fn()
    floor = {k: statistics.median(v) for k, v in floors.items()}

    tps = {k: NEW_TOKENS / s for k, s in t.items()}
    ratio_hf = tps["cache"] / tps["hf"]
    print(
        f"\n2. greedy generation: {NEW_TOKENS} new tokens after a {PROMPT}-token prompt, batch 1,"
        f" context {PROMPT + NEW_TOKENS}; median of {repeats} (no cache: {no_cache_repeats})"
    )
    print(
        f"   same tokens from all three ({distinct} distinct ids among the {NEW_TOKENS} new"
        " ones; init std 0.1)"
    )
    rows = (
        ("cache", "ours, KV cache"),
        ("no_cache", "ours, no cache"),
        ("hf", "HF generate, its cache"),
    )
    for name, label in rows:
        print(f"   {label:<24} {t[name]:7.3f} s, {tps[name]:8.1f} tokens/s")
    print(
        f"   one single-token forward with a cache (median over positions"
        f" {PROMPT}-{PROMPT + NEW_TOKENS - 2}):"
        f" ours {floor['ours'] * 1e3:.2f} ms ({1 / floor['ours']:.0f} tokens/s),"
        f" HF {floor['hf'] * 1e3:.2f} ms ({1 / floor['hf']:.0f} tokens/s)"
    )
    print(
        f"   generate's time per token over the floor: ours"
        f" {t['cache'] / NEW_TOKENS / floor['ours']:.2f}x, HF"
        f" {t['hf'] / NEW_TOKENS / floor['hf']:.2f}x"
    )
    print(
        f"   ratio ours-cache/HF-generate {ratio_hf:.2f}x (requirement >= 1.25x);"
        f" cache/no-cache {tps['cache'] / tps['no_cache']:.1f}x"
    )
    return ratio_hf >= 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="timed training steps each (default 10)")
    parser.add_argument("--gen-repeats", type=int, help="timed generations each (default 5)")
    parser.add_argument(
        "--no-cache-repeats", type=int, help="timed generations without the cache (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: defaults of 2 repeats (1 without the cache)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    defaults = {"repeats": (10, 2), "gen_repeats": (5, 2), "no_cache_repeats": (3, 1)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    device = torch.device("cpu")
    torch.manual_seed(0)

    for line in machine_lines():
        print(line)
    best, rates = matmul_ceiling(torch.float32, device, repeats=2 if args.quick else 5)
    print(ceiling_line("float32", best, rates))
    ok_train = bench_training(args.repeats, device, best)
    ok_gen = bench_generation(args.gen_repeats, args.no_cache_repeats, device)
    met = "met" if ok_train and ok_gen else "NOT met"
    print(f"\nspeed requirements (ours >= 1.25x HF in training and in cached generation): {met}")


if __name__ == "__main__":
    main()
