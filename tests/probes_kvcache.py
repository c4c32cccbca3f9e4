"""Bad-input probes of llmbook.kvcache (collected by tests/test_bad_input.py)."""

import torch

from llmbook import kvcache


def _cache():
    c = kvcache.PagedKVCache(4, 2, 1, 2)
    c.append(0, torch.ones(1, 3, 2), torch.ones(1, 3, 2))
    return c


PROBES = [
    ("llmbook.kvcache.blocks_needed", "block_size", lambda t: kvcache.blocks_needed(3, 0)),
    ("llmbook.kvcache.BlockAllocator", "n_blocks", lambda t: kvcache.BlockAllocator(0)),
    ("llmbook.kvcache.BlockAllocator.free", "block", lambda t: kvcache.BlockAllocator(2).free(0)),
    ("llmbook.kvcache.PagedKVCache", "block_size", lambda t: kvcache.PagedKVCache(4, 0, 1, 2)),
    (
        "llmbook.kvcache.PagedKVCache.append",
        "k must",
        lambda t: _cache().append(1, torch.ones(2, 1, 2), torch.ones(2, 1, 2)),
    ),
    ("llmbook.kvcache.PagedKVCache.free", "seq_id", lambda t: _cache().free(5)),
    ("llmbook.kvcache.PagedKVCache.gather", "seq_id", lambda t: _cache().gather("0")),
    ("llmbook.kvcache.PagedKVCache.length", "seq_id", lambda t: _cache().length(1)),
    ("llmbook.kvcache.PagedKVCache.block_table", "seq_id", lambda t: _cache().block_table(2)),
    (
        "llmbook.kvcache.PagedKVCache.attend",
        "q must",
        lambda t: _cache().attend(0, torch.ones(1, 1, 3)),
    ),
    ("llmbook.kvcache.kv_slot_usage", "lengths", lambda t: kvcache.kv_slot_usage([0, 2], 4, 8)),
]

NO_ARGUMENTS = {"llmbook.kvcache.BlockAllocator.allocate"}
