"""Bad-input probes of llmbook.peft (collected by tests/test_bad_input.py)."""

import torch
from torch import nn

from llmbook import attention, gpt, peft


def _gpt(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8)
    return gpt.GPT(gpt.GPTConfig(**(cfg | kw)))


def _lora():
    return peft.LoRALinear(nn.Linear(4, 3), 2, 2)


def _prefix():
    return peft.PrefixAttention(_gpt().blocks[0].attn, 2)


PROBES = [
    ("llmbook.peft.NF4Linear", "linear", lambda t: peft.NF4Linear(nn.Conv1d(2, 2, 1))),
    ("llmbook.peft.NF4Linear", "block_size", lambda t: peft.NF4Linear(nn.Linear(4, 4), 0)),
    (
        "llmbook.peft.NF4Linear.forward",
        "x must",
        lambda t: peft.NF4Linear(nn.Linear(4, 4))(torch.ones(2, 5)),
    ),
    ("llmbook.peft.LoRALinear", "r must", lambda t: peft.LoRALinear(nn.Linear(4, 3), 0, 2)),
    ("llmbook.peft.LoRALinear", "alpha must", lambda t: peft.LoRALinear(nn.Linear(4, 3), 2, 0)),
    (
        "llmbook.peft.LoRALinear",
        "dropout must",
        lambda t: peft.LoRALinear(nn.Linear(4, 3), 2, 2, dropout=1.0),
    ),
    ("llmbook.peft.LoRALinear", "base must", lambda t: peft.LoRALinear(nn.ReLU(), 2, 2)),
    ("llmbook.peft.LoRALinear.forward", "x must", lambda t: _lora()(torch.ones(2, 3))),
    ("llmbook.peft.lora_parameter_count", "r must", lambda t: peft.lora_parameter_count(4, 4, 0)),
    (
        "llmbook.peft.lora_model_parameter_count",
        "target_modules",
        lambda t: peft.lora_model_parameter_count(_gpt().config, ("nothing",), 2),
    ),
    (
        "llmbook.peft.inject_lora",
        "target_modules",
        lambda t: peft.inject_lora(_gpt(), ("nothing",), 2, 2),
    ),
    ("llmbook.peft.inject_lora", "r must", lambda t: peft.inject_lora(_gpt(), ("q_proj",), 0, 2)),
    (
        "llmbook.peft.inject_qlora",
        "block_size",
        lambda t: peft.inject_qlora(_gpt(), ("q_proj",), 2, 2, block_size=0),
    ),
    ("llmbook.peft.merge_lora", "LoRALinear", lambda t: peft.merge_lora(_gpt())),
    ("llmbook.peft.Adapter", "m must", lambda t: peft.Adapter(8, 0)),
    ("llmbook.peft.Adapter", "activation", lambda t: peft.Adapter(8, 2, activation="tanh")),
    ("llmbook.peft.Adapter.forward", "h must", lambda t: peft.Adapter(8, 2)(torch.ones(2, 3))),
    (
        "llmbook.peft.adapter_parameter_count",
        "m must",
        lambda t: peft.adapter_parameter_count(8, 0),
    ),
    ("llmbook.peft.inject_adapters", "where", lambda t: peft.inject_adapters(_gpt(), 2, ("ffn",))),
    ("llmbook.peft.inject_adapters", "model", lambda t: peft.inject_adapters(nn.Linear(2, 2), 2)),
    (
        "llmbook.peft.PrefixAttention",
        "n_prefix",
        lambda t: peft.PrefixAttention(_gpt().blocks[0].attn, 0),
    ),
    (
        "llmbook.peft.PrefixAttention",
        "attn",
        lambda t: peft.PrefixAttention(_gpt(positional="alibi").blocks[0].attn, 2),
    ),
    ("llmbook.peft.PrefixAttention.forward", "x must", lambda t: _prefix()(torch.ones(1, 3, 5))),
    (
        "llmbook.peft.PrefixAttention.forward",
        "kv_cache",
        lambda t: _prefix()(torch.ones(1, 3, 8), attention.KVCache(8)),
    ),
    (
        "llmbook.peft.PrefixAttention.forward",
        "mask",
        lambda t: _prefix()(torch.ones(1, 3, 8), mask=torch.ones(3, 3)),
    ),
    (
        "llmbook.peft.prefix_parameter_count",
        "n_prefix",
        lambda t: peft.prefix_parameter_count(2, 0, 8),
    ),
    (
        "llmbook.peft.prefix_parameter_count",
        "n_kv_head",
        lambda t: peft.prefix_parameter_count(2, 2, 8, 2, 3),
    ),
    ("llmbook.peft.inject_prefix", "n_prefix", lambda t: peft.inject_prefix(_gpt(), 0)),
    (
        "llmbook.peft.mark_only_peft_trainable",
        "inject",
        lambda t: peft.mark_only_peft_trainable(_gpt()),
    ),
    (
        "llmbook.peft.count_trainable_parameters",
        "model",
        lambda t: peft.count_trainable_parameters("gpt"),
    ),
    (
        "llmbook.peft.finetune_memory_bytes",
        "frozen_bits",
        lambda t: peft.finetune_memory_bytes(1e9, 1e6, frozen_bits=0),
    ),
]

NO_ARGUMENTS = {
    "llmbook.peft.LoRALinear.delta_weight",
    "llmbook.peft.LoRALinear.merge",
    "llmbook.peft.LoRALinear.unmerge",
}
