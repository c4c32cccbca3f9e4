r"""Speculative sampling: a cheap draft model proposes, the target verifies (Chapter 13).

A draft model with next-token distributions :math:`q` proposes :math:`K` tokens
:math:`\tilde x_1, \dots, \tilde x_K`, one call each; the target scores all of them in
**one** call, which gives its distributions :math:`p_1, \dots, p_{K+1}` at the :math:`K + 1`
positions. Left to right, draft token :math:`\tilde x_i` is accepted with probability
:math:`\min\big(1, p_i(\tilde x_i) / q_i(\tilde x_i)\big)`; at the first rejection a
token is drawn from the residual :math:`\operatorname{norm}(\max(0, p_i - q_i))` and the
round ends; when all :math:`K` are accepted, a bonus token is drawn from :math:`p_{K+1}`
(Leviathan et al. 2023; Chen et al. 2023). Every emitted token is then distributed
exactly as the target's own sample (:func:`verify`, tested by enumeration), while a
round costs one target call and emits between 1 and :math:`K + 1` tokens.

With :math:`\alpha = \sum_x \min(p(x), q(x)) = 1 - \operatorname{TV}(p, q)` the probability
that a draft token is accepted (:func:`acceptance_rate`), and acceptances independent with
that rate, a round emits :math:`(1 - \alpha^{K+1}) / (1 - \alpha)` tokens on average
(:func:`expected_tokens_per_call`).

:func:`speculative_generate` runs the loop over two :class:`~llmbook.gpt.GPT` models that
share a vocabulary, with a :class:`~llmbook.attention.KVCache` per layer of each; the caches
are rolled back (:meth:`~llmbook.attention.KVCache.truncate`) past rejected tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from llmbook._validate import check_float_tensor, check_int, check_number, check_type, show
from llmbook.attention import KVCache
from llmbook.decoding import Processor
from llmbook.gpt import GPT, MIN_TEMPERATURE


# ------------------------------------------------------------------------------ theory
def _check_pair(p: object, q: object) -> tuple[Tensor, Tensor]:
    p = check_float_tensor("p", p, finite=True)
    q = check_float_tensor("q", q, finite=True)
    if p.shape != q.shape or p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(
            f"p and q must be distributions of the same shape (..., V), got {show(p)} and {show(q)}"
        )
    return p, q


def acceptance_rate(p: Tensor, q: Tensor) -> Tensor:
    r"""The probability that a draft token :math:`x \sim q` is accepted (Chapter 13):

    .. math::
        \alpha = \sum_x q(x) \min\Big(1, \frac{p(x)}{q(x)}\Big) = \sum_x \min(p(x), q(x))
        = 1 - \operatorname{TV}(p, q).

    ``p`` and ``q`` are distributions over the last dimension (any leading shape); the
    result has the leading shape.
    """
    p, q = _check_pair(p, q)
    return torch.minimum(p, q).sum(dim=-1)


def expected_tokens_per_call(alpha: float, k: int) -> float:
    r"""Tokens emitted per target call when each of ``k`` draft tokens is accepted
    independently with probability :math:`\alpha` (Chapter 13):

    .. math::
        \mathbb E[\text{tokens}] = \sum_{i=0}^{K} \alpha^i = \frac{1 - \alpha^{K+1}}{1 - \alpha}
        \quad (K + 1 \text{ at } \alpha = 1).

    The accepted prefix has length :math:`i` with probability :math:`\alpha^i (1 - \alpha)`
    (:math:`\alpha^K` for :math:`i = K`), and every round adds one token from the target.
    """
    a = check_number("alpha", alpha, low=0.0, high=1.0)
    k = check_int("k", k, 0)
    return float(k + 1) if a == 1.0 else (1 - a ** (k + 1)) / (1 - a)


def residual_distribution(p: Tensor, q: Tensor) -> Tensor:
    r"""Where a rejected draft token is replaced from (Chapter 13):
    :math:`r = \max(0, p - q) / \sum_x \max(0, p(x) - q(x))`, over the last dimension.

    When :math:`p = q` nothing is ever rejected and the residual is undefined; :math:`p` is
    returned there (rounding can still make a rejection possible).
    """
    p, q = _check_pair(p, q)
    r = (p - q).clamp_min(0)
    total = r.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, r / torch.where(total > 0, total, 1), p)


def _inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """The token whose interval of the cumulative distribution holds ``u`` (in [0, 1))."""
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[-1]).reshape(1), right=True)
    if int(idx) >= probs.shape[-1] or probs[idx] == 0:  # rounding ran past the last token
        idx = (probs > 0).nonzero()[-1]  # of positive mass: take that one
    return idx


# ------------------------------------------------------------------------------ one round
@dataclass(frozen=True)
class Verdict:
    """The outcome of one round of verification (Chapter 13).

    Attributes:
        tokens: the emitted ids, ``(n_accepted + 1,)``: the accepted draft prefix and then a
            token from the residual (after a rejection) or from :math:`p_{K+1}` (the bonus).
        n_accepted: how many draft tokens were accepted (0..K).
        alphas: :math:`\\alpha_i = \\sum_x \\min(p_i, q_i)` for each draft token that was
            tested (``n_accepted`` or ``n_accepted + 1`` values).
    """

    tokens: Tensor
    n_accepted: int
    alphas: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, Tensor) or self.tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-d tensor of ids, got {show(self.tokens)}")
        check_int("n_accepted", self.n_accepted, 0, self.tokens.numel() - 1)
        check_float_tensor("alphas", self.alphas, ndim=1)


def verify(
    draft_tokens: Tensor,
    q: Tensor,
    p: Tensor,
    *,
    generator: torch.Generator | None = None,
    u: Tensor | None = None,
) -> Verdict:
    r"""One round of speculative sampling: accept a prefix of the draft, then add one token
    (Chapter 13).

    For :math:`i = 1, \dots, K`: accept :math:`\tilde x_i` if :math:`u_i <
    p_i(\tilde x_i) / q_i(\tilde x_i)`; at the first rejection draw the last token from
    :func:`residual_distribution` of :math:`(p_i, q_i)`; if all are accepted draw it from
    :math:`p_{K+1}`. The last token is drawn by the inverse of the cumulative distribution
    at :math:`u_{K+1}`.

    Parameters
    ----------
    draft_tokens : torch.Tensor
        The :math:`K` proposed ids, ``(K,)`` (:math:`K \ge 0`), each drawn from its row of q.
    q : torch.Tensor
        The draft's distributions, ``(K, V)``.
    p : torch.Tensor
        The target's distributions at the same positions and one more, ``(K + 1, V)``.
    generator : torch.Generator, optional
        The source of the uniforms when ``u`` is not given.
    u : torch.Tensor, optional
        The :math:`K + 1` uniforms in [0, 1) to use instead (to enumerate the branches
        exactly in tests).

    Returns
    -------
    Verdict
        The emitted tokens, the number accepted and the acceptance rates of the tested
        positions.
    """
    p = check_float_tensor("p", p, ndim=2, shape="(K + 1, V)", finite=True)
    K, V = p.shape[0] - 1, p.shape[1]
    q = check_float_tensor("q", q, ndim=2, shape="(K, V)", finite=True)
    if q.shape != (K, V):
        raise ValueError(f"q must have shape (K, V) = {(K, V)} to match p, got {show(q)}")
    if not isinstance(draft_tokens, Tensor) or draft_tokens.is_floating_point():
        raise ValueError(f"draft_tokens must be a 1-d integer tensor, got {show(draft_tokens)}")
    if draft_tokens.shape != (K,):
        raise ValueError(f"draft_tokens must have shape (K,) = ({K},), got {show(draft_tokens)}")
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    if u is not None:
        u = check_float_tensor("u", u, ndim=1, finite=True)
        if u.shape != (K + 1,) or bool(((u < 0) | (u >= 1)).any()):
            raise ValueError(f"u must hold K + 1 = {K + 1} numbers in [0, 1), got {show(u)}")
    return _verify(draft_tokens.long(), q, p, generator, u)


def _verify(
    d: Tensor, q: Tensor, p: Tensor, generator: torch.Generator | None, u: Tensor | None
) -> Verdict:
    """:func:`verify` without the argument checks (the generation loop's inner step)."""
    K = d.shape[0]
    if u is None:
        u = torch.rand(K + 1, generator=generator, dtype=torch.float64)
    pd = p[:-1].gather(1, d[:, None])[:, 0].double()
    qd = q.gather(1, d[:, None])[:, 0].double()
    accept = u[:K] * qd < pd  # u < p/q, without dividing by q
    n = K if bool(accept.all()) else int((~accept).long().argmax())
    alphas = torch.minimum(p[: min(n + 1, K)], q[: min(n + 1, K)]).sum(-1)
    if n == K:
        last = p[K]
    else:
        r = (p[n] - q[n]).clamp_min(0)
        last = r if bool(r.sum() > 0) else p[n]  # p = q: rounding rejected; fall back to p
    y = _inverse_cdf(last, u[K].to(last.dtype))
    return Verdict(torch.cat([d[:n], y]), n, alphas)


# ------------------------------------------------------------------------------ the loop
@dataclass
class SpeculativeStats:
    r"""What a :func:`speculative_generate` run did (Chapter 13).

    Attributes:
        target_calls: forward calls of the target (one per round, plus none for the prompt:
            the prompt is read in the first round's call).
        draft_calls: forward calls of the draft.
        tested: draft tokens that went through the acceptance test.
        accepted: draft tokens accepted.
        expected_accepted: :math:`\sum \alpha_i` over the tested positions, the number of
            acceptances the theory predicts from the two models' distributions there.
        emitted: tokens appended.
    """

    target_calls: int = 0
    draft_calls: int = 0
    tested: int = 0
    accepted: int = 0
    expected_accepted: float = 0.0
    emitted: int = 0

    def __post_init__(self) -> None:
        for name in ("target_calls", "draft_calls", "tested", "accepted", "emitted"):
            check_int(name, getattr(self, name), 0)
        check_number("expected_accepted", self.expected_accepted, low=0.0)

    @property
    def acceptance_rate(self) -> float:
        """The measured rate, accepted / tested (NaN before any test)."""
        return self.accepted / self.tested if self.tested else math.nan

    @property
    def predicted_acceptance_rate(self) -> float:
        r"""The predicted rate, the mean :math:`\alpha_i` over the tested positions."""
        return self.expected_accepted / self.tested if self.tested else math.nan

    @property
    def tokens_per_call(self) -> float:
        """The number of emitted tokens per target call."""
        return self.emitted / self.target_calls if self.target_calls else math.nan


def _check_draft_logits(logits: object, V: int) -> Tensor:
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.shape != (V,):
        raise ValueError(
            f"draft(ids) must return logits of shape (V,) = ({V},), got {show(logits)}"
        )
    return logits[None]


def _distributions(
    logits: Tensor, seq: Tensor, start: int, temperature: float, processors: Processor | None
) -> Tensor:
    """Next-token probabilities from logits ``(n, V)`` whose row ``j`` follows
    ``seq[:start + j]``; processors see that prefix."""
    z = (logits if logits.dtype == torch.float64 else logits.float()) / temperature
    if processors is not None:
        z = torch.cat([processors(seq[None, : start + j], z[j : j + 1]) for j in range(z.shape[0])])
    return torch.softmax(z, dim=-1)


@torch.no_grad()
def speculative_generate(
    target: GPT,
    draft: GPT | Callable[[Tensor], Tensor],
    idx: Tensor,
    max_new_tokens: int,
    k: int = 4,
    *,
    temperature: float = 1.0,
    processors: Processor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, SpeculativeStats]:
    r"""Sample ``max_new_tokens`` tokens from ``target`` with ``draft`` proposing ``k`` at a
    time (Chapter 13); the output is distributed as the target's own samples.

    Each round: the draft proposes :math:`K` tokens (:math:`K` calls, one position each,
    with its KV cache), the target scores them in one call of :math:`K + 1` positions, and
    :func:`verify` keeps a prefix and adds one token. Both caches are then truncated to the
    tokens kept. Both models see the logits divided by ``temperature`` and then
    ``processors`` (e.g. :class:`llmbook.decoding.TopK`), applied position by position with
    the right prefix, so the target's distribution *after* processing is what is sampled.
    :math:`K` shrinks near the end so that no more than ``max_new_tokens`` are produced.

    Parameters
    ----------
    target : llmbook.gpt.GPT
        The model to sample from; call ``.eval()`` first when it has dropout.
    draft : llmbook.gpt.GPT or callable
        A GPT with the target's ``vocab_size`` (run with its own KV cache), or any function
        from the ids so far, ``(t,)``, to next-token logits ``(V,)`` (an n-gram table, say).
    idx : torch.Tensor
        The prompt, ``(1, T0)`` integer ids (one sequence; :math:`T_0 \ge 1`). Prompt and
        new tokens must fit both contexts: :math:`T_0 + \text{max\_new\_tokens} \le
        \min(\text{block\_size})`.
    max_new_tokens : int
        Tokens to append (>= 0).
    k : int
        Draft tokens per round, :math:`K \ge 1`.
    temperature : float
        Divides the logits of both models (at least :data:`llmbook.gpt.MIN_TEMPERATURE`).
    processors : callable, optional
        A logits processor ``(input_ids, scores) -> scores`` applied after the temperature.
    generator : torch.Generator, optional
        Seeds the draft's samples and the acceptance tests.

    Returns
    -------
    tuple
        ``(ids (1, T0 + max_new_tokens), SpeculativeStats)``.
    """
    check_type("target", target, GPT, "an llmbook.gpt.GPT")
    if not isinstance(draft, GPT) and not callable(draft):
        raise ValueError(f"draft must be an llmbook.gpt.GPT or a callable, got {show(draft)}")
    V = target.config.vocab_size
    if isinstance(draft, GPT) and draft.config.vocab_size != V:
        raise ValueError(
            f"draft must share the target's vocabulary: vocab_size {draft.config.vocab_size} vs {V}"
        )
    idx = target._check_idx(idx)
    if idx.shape[0] != 1:
        raise ValueError(f"idx must hold one sequence (1, T0), got {show(idx)}")
    max_new = check_int("max_new_tokens", max_new_tokens, 0)
    k = check_int("k", k, 1)
    temperature = check_number("temperature", temperature, low=MIN_TEMPERATURE)
    if processors is not None and not callable(processors):
        raise ValueError(f"processors must be callable or None, got {show(processors)}")
    if generator is not None:
        check_type("generator", generator, torch.Generator, "a torch.Generator or None")
    limit = target.config.block_size
    if isinstance(draft, GPT):
        limit = min(limit, draft.config.block_size)
    if idx.shape[1] + max_new > limit:
        raise ValueError(
            f"max_new_tokens={max_new} with a prompt of {idx.shape[1]} tokens exceeds the "
            f"context length {limit} (no sliding window here)"
        )
    seq = idx[0].clone()
    end = seq.shape[0] + max_new
    t_caches = [KVCache(limit) for _ in target.blocks]
    d_caches = [KVCache(limit) for _ in draft.blocks] if isinstance(draft, GPT) else []
    stats = SpeculativeStats()
    while seq.shape[0] < end:
        n0, K = seq.shape[0], min(k, end - seq.shape[0] - 1)
        drafts, q_rows = [], []
        for _ in range(K):  # the draft proposes, one position per call
            ctx = torch.cat([seq, *drafts])
            if d_caches:
                logits = draft._logits(ctx[None, d_caches[0].length :], d_caches, True)[0]
            else:
                logits = _check_draft_logits(draft(ctx), V)
            q_i = _distributions(logits[-1:], ctx, ctx.shape[0], temperature, processors)
            drafts.append(torch.multinomial(q_i[0], 1, generator=generator))
            q_rows.append(q_i)
            stats.draft_calls += 1
        ctx = torch.cat([seq, *drafts])
        start = t_caches[0].length  # the target reads what its cache lacks, drafts included
        logits = target._logits(ctx[None, start:], t_caches)[0][n0 - 1 - start :]
        p = _distributions(logits, ctx, n0, temperature, processors)
        stats.target_calls += 1
        d_tok = torch.cat(drafts) if drafts else seq.new_empty(0)
        q = torch.cat(q_rows) if q_rows else p.new_empty(0, V)
        verdict = _verify(d_tok, q, p, generator, None)
        seq = torch.cat([seq, verdict.tokens])
        keep = n0 + verdict.n_accepted  # positions whose keys and values are still valid
        for cache in (*t_caches, *d_caches):
            cache.truncate(min(cache.length, keep))
        stats.tested += verdict.alphas.numel()
        stats.accepted += verdict.n_accepted
        stats.expected_accepted += float(verdict.alphas.sum())
        stats.emitted += verdict.tokens.numel()
    return seq[None], stats


__all__ = [
    "SpeculativeStats",
    "Verdict",
    "acceptance_rate",
    "expected_tokens_per_call",
    "residual_distribution",
    "speculative_generate",
    "verify",
]
