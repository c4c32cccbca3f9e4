r"""A paged KV cache, as in vLLM's PagedAttention (Kwon et al. 2023; Chapter 13).

The contiguous cache, :class:`llmbook.attention.KVCache`, reserves room for ``max_len``
positions per sequence up front. A server does not know how long an answer will be, so it
must reserve the longest possible one, and most of that room stays empty. A paged cache
stores keys and values in fixed-size **blocks** of ``block_size`` positions taken from a
shared pool, as an operating system stores a process's memory in pages:

* a :class:`BlockAllocator` hands out free blocks and takes them back (a free list);
* each sequence has a **block table**, the list of its blocks in order, so position
  :math:`t` of a sequence lives in slot :math:`t \bmod b` of block
  :math:`\text{table}[\lfloor t/b \rfloor]` (:math:`b` = ``block_size``);
* attention gathers a sequence's keys and values through its table and computes exactly
  what attention over the contiguous cache computes (tested).

A sequence of :math:`T` tokens holds :math:`\lceil T/b\rceil` blocks, so it wastes at most
:math:`b - 1` slots, in its last block; :func:`kv_slot_usage` measures that against a
contiguous reservation of ``max_len`` slots per request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from llmbook._validate import check_float_dtype, check_int, is_int, show
from llmbook.attention import causal_mask, scaled_dot_product_attention


def blocks_needed(n_tokens: int, block_size: int) -> int:
    r"""Blocks that hold ``n_tokens`` positions: :math:`\lceil T / b \rceil` (Chapter 13)."""
    n_tokens = check_int("n_tokens", n_tokens, 0)
    block_size = check_int("block_size", block_size, 1)
    return -(-n_tokens // block_size)


class BlockAllocator:
    """A free list of ``n_blocks`` physical block ids, ``0 … n_blocks - 1`` (Chapter 13).

    :meth:`allocate` always returns the lowest free id, so a run is deterministic;
    :meth:`free` returns a block to the list and refuses one that is not allocated.
    """

    def __init__(self, n_blocks: int) -> None:
        self.n_blocks = check_int("n_blocks", n_blocks, 1)
        self._free = list(range(self.n_blocks - 1, -1, -1))  # a stack: lowest id on top
        self._used: set[int] = set()

    @property
    def n_free(self) -> int:
        """The number of free blocks."""
        return len(self._free)

    def allocate(self) -> int:
        """Take a free block; raise ``MemoryError`` when none is left."""
        if not self._free:
            raise MemoryError(f"all {self.n_blocks} blocks are in use")
        block = self._free.pop()
        self._used.add(block)
        return block

    def free(self, block: int) -> None:
        """Return ``block`` to the free list (it must be allocated)."""
        if not is_int(block) or int(block) not in self._used:
            raise ValueError(f"block must be an allocated block id, got {show(block)}")
        self._used.remove(int(block))
        self._free.append(int(block))
        self._free.sort(reverse=True)


class PagedKVCache:
    r"""Keys and values of many sequences in a shared pool of blocks, for one attention
    layer (Chapter 13).

    The pool holds ``n_blocks`` blocks of shape ``(n_kv_head, block_size, d_head)`` for
    keys and the same for values. :meth:`append` writes a sequence's new positions into
    the free slots of its last block and takes new blocks as needed; :meth:`gather`
    reads a sequence back through its block table; :meth:`attend` runs attention over
    it; :meth:`free` returns its blocks. Sequences are named by any integer id.
    """

    def __init__(
        self,
        n_blocks: int,
        block_size: int,
        n_kv_head: int,
        d_head: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.block_size = check_int("block_size", block_size, 1)
        self.n_kv_head = check_int("n_kv_head", n_kv_head, 1)
        self.d_head = check_int("d_head", d_head, 1)
        dtype = check_float_dtype("dtype", dtype)
        self.allocator = BlockAllocator(n_blocks)
        shape = (self.allocator.n_blocks, self.n_kv_head, self.block_size, self.d_head)
        self.k_pool = torch.zeros(shape, dtype=dtype, device=device)
        self.v_pool = torch.zeros(shape, dtype=dtype, device=device)
        self._tables: dict[int, list[int]] = {}
        self._lengths: dict[int, int] = {}

    # ------------------------------------------------------------------ bookkeeping
    @property
    def sequences(self) -> list[int]:
        """The ids of the sequences stored, in the order they were added."""
        return list(self._tables)

    def _check_seq(self, seq_id: object) -> int:
        if not is_int(seq_id) or int(seq_id) not in self._tables:
            raise ValueError(
                f"seq_id must be the id of a stored sequence {self.sequences}, got {show(seq_id)}"
            )
        return int(seq_id)

    def length(self, seq_id: int) -> int:
        """The number of positions stored for sequence ``seq_id``."""
        return self._lengths[self._check_seq(seq_id)]

    def block_table(self, seq_id: int) -> list[int]:
        """The physical blocks of sequence ``seq_id``, in the order of its positions."""
        return list(self._tables[self._check_seq(seq_id)])

    # ---------------------------------------------------------------------- writing
    def append(self, seq_id: int, k: Tensor, v: Tensor) -> None:
        """Append positions to sequence ``seq_id`` (a new id starts a new sequence).

        ``k`` and ``v`` have shape ``(n_kv_head, T_new, d_head)``. The blocks needed are
        taken first, so a failed append (``MemoryError``) changes nothing.
        """
        if not is_int(seq_id):
            raise ValueError(f"seq_id must be an integer, got {show(seq_id)}")
        seq_id = int(seq_id)
        want = (self.n_kv_head, self.d_head)
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, Tensor) or t.ndim != 3 or (t.shape[0], t.shape[2]) != want:
                raise ValueError(
                    f"{name} must be a tensor of shape (n_kv_head={want[0]}, T_new, "
                    f"d_head={want[1]}), got {show(t)}"
                )
        if k.shape != v.shape:
            raise ValueError(f"k and v shapes disagree: {tuple(k.shape)} and {tuple(v.shape)}")
        table = self._tables.get(seq_id, [])
        start = self._lengths.get(seq_id, 0)
        end = start + k.shape[1]
        extra = blocks_needed(end, self.block_size) - len(table)
        if extra > self.allocator.n_free:
            raise MemoryError(
                f"sequence {seq_id} needs {extra} more blocks, {self.allocator.n_free} are free"
            )
        table = table + [self.allocator.allocate() for _ in range(extra)]
        self._tables[seq_id], self._lengths[seq_id] = table, end
        pos = torch.arange(start, end)
        blocks = torch.tensor(table)[pos // self.block_size]
        slots = pos % self.block_size
        self.k_pool[blocks, :, slots] = k.transpose(0, 1).to(self.k_pool)
        self.v_pool[blocks, :, slots] = v.transpose(0, 1).to(self.v_pool)

    def free(self, seq_id: int) -> None:
        """Forget sequence ``seq_id`` and return its blocks to the pool."""
        seq_id = self._check_seq(seq_id)
        for block in self._tables.pop(seq_id):
            self.allocator.free(block)
        del self._lengths[seq_id]

    # ---------------------------------------------------------------------- reading
    def gather(self, seq_id: int) -> tuple[Tensor, Tensor]:
        """The keys and values of sequence ``seq_id``, each ``(n_kv_head, T, d_head)``,
        read through its block table."""
        seq_id = self._check_seq(seq_id)
        table = torch.tensor(self._tables[seq_id], device=self.k_pool.device)
        T = self._lengths[seq_id]
        out = []
        for pool in (self.k_pool, self.v_pool):
            blocks = pool[table]  # (n_blocks_seq, n_kv_head, block_size, d_head)
            out.append(blocks.transpose(0, 1).reshape(self.n_kv_head, -1, self.d_head)[:, :T])
        return out[0], out[1]

    def attend(self, seq_id: int, q: Tensor) -> Tensor:
        r"""Causal attention of queries ``q`` ``(n_head, T_q, d_head)``, the sequence's last
        ``T_q`` positions, over its stored keys and values:
        :math:`\operatorname{softmax}(\mathbf Q\mathbf K^\top/\sqrt{d_{\text{head}}} + M)
        \mathbf V` (grouped-query heads allowed). Returns ``(n_head, T_q, d_head)``."""
        k, v = self.gather(seq_id)
        if not isinstance(q, Tensor) or q.ndim != 3 or q.shape[2] != self.d_head:
            raise ValueError(
                f"q must be a tensor of shape (n_head, T_q, d_head={self.d_head}), got {show(q)}"
            )
        if q.shape[0] % self.n_kv_head or q.shape[1] > k.shape[1]:
            raise ValueError(
                f"q must have a multiple of n_kv_head={self.n_kv_head} heads and at most "
                f"T={k.shape[1]} positions, got {tuple(q.shape)}"
            )
        mask = causal_mask(q.shape[1], k.shape[1], device=q.device)
        return scaled_dot_product_attention(q[None], k[None].to(q), v[None].to(q), mask)[0]


def kv_slot_usage(lengths: Sequence[int] | np.ndarray, block_size: int, max_len: int) -> dict:
    r"""KV slots used and wasted by requests of ``lengths`` tokens (Chapter 13).

    A contiguous cache reserves ``max_len`` slots per request; a paged one
    :math:`\lceil T_i / b\rceil\, b`. Returns ``tokens`` (:math:`\sum_i T_i`),
    ``paged_slots``, ``contiguous_slots``, and the wasted fractions
    ``paged_waste`` :math:`= 1 - \text{tokens}/\text{paged\_slots}` (internal
    fragmentation: the unfilled part of last blocks) and ``contiguous_waste``.
    """
    block_size = check_int("block_size", block_size, 1)
    max_len = check_int("max_len", max_len, 1)
    values = list(lengths.tolist() if isinstance(lengths, np.ndarray) else lengths)
    if not values or not all(is_int(n) and 1 <= n <= max_len for n in values):
        raise ValueError(
            f"lengths must be a non-empty sequence of integers in [1, max_len={max_len}], "
            f"got {show(lengths)}"
        )
    tokens = int(sum(values))
    paged = int(sum(blocks_needed(int(n), block_size) * block_size for n in values))
    contiguous = len(values) * max_len
    return {
        "tokens": tokens,
        "paged_slots": paged,
        "contiguous_slots": contiguous,
        "paged_waste": 1 - tokens / paged,
        "contiguous_waste": 1 - tokens / contiguous,
    }


__all__ = [
    "BlockAllocator",
    "PagedKVCache",
    "blocks_needed",
    "kv_slot_usage",
]
