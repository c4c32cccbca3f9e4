"""Bad-input probes of llmbook.rlhf (collected by tests/test_bad_input.py)."""

import torch

from llmbook import rlhf
from llmbook.corpus import play_text
from llmbook.gpt import GPT, GPTConfig
from llmbook.reward import LexiconReward
from llmbook.tokenizer import BPETokenizer


def _gpt(vocab=300):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, d_model=8))


def _tok():
    return BPETokenizer.train(play_text("twelfth-night")[:20_000], 300)


def _reward():
    return LexiconReward({"chain": 1.0})


def _prompts(n=2, p=2):
    return torch.zeros(n, p, dtype=torch.int64)


def _rollout(**change):
    B, T = 2, 4
    parts = dict(
        ids=torch.zeros(B, T, dtype=torch.int64),
        mask=torch.tensor([[0, 0, 1, 1]] * B, dtype=torch.float32),
        logprobs=torch.zeros(B, T - 1),
        ref_logprobs=torch.zeros(B, T - 1),
        features=torch.zeros(B, T - 1, 8),
        values=torch.zeros(B, T - 1),
        scores=torch.zeros(B),
        rewards=torch.zeros(B, T - 1),
        advantages=torch.zeros(B, T - 1),
        returns=torch.zeros(B, T - 1),
    )
    return rlhf.Rollout(**{**parts, **change})


def _ppo_update_bad_optimizer():
    model = _gpt()
    return rlhf.ppo_update(model, rlhf.ValueHead(8), _rollout(), "adam", rlhf.PPOConfig())


def _zoo(fn):
    return fn("not a recipe", None, torch.device("cpu"), False)


PROBES = [
    (
        "llmbook.rlhf.word_frequencies",
        "vocabulary must not repeat a word",
        lambda t: rlhf.word_frequencies(["a b"], ["a", "a"]),
    ),
    (
        "llmbook.rlhf.fit_bradley_terry",
        "features_chosen and features_rejected must have one non-empty shape",
        lambda t: rlhf.fit_bradley_terry(torch.zeros(3, 2), torch.zeros(3, 4)),
    ),
    (
        "llmbook.rlhf.hidden_states",
        "model must be an llmbook.gpt.GPT",
        lambda t: rlhf.hidden_states(None, _prompts()),
    ),
    ("llmbook.rlhf.ValueHead", "hidden must be a positive integer", lambda t: rlhf.ValueHead(8, 0)),
    (
        "llmbook.rlhf.ValueHead.forward",
        r"features must be a \(B, n, 8\) tensor",
        lambda t: rlhf.ValueHead(8)(torch.zeros(2, 3, 4)),
    ),
    ("llmbook.rlhf.PPOConfig", "clip_eps must be", lambda t: rlhf.PPOConfig(clip_eps=1.5)),
    (
        "llmbook.rlhf.GRPOConfig",
        "group_size must be an integer >= 2",
        lambda t: rlhf.GRPOConfig(group_size=1),
    ),
    (
        "llmbook.rlhf.Rollout",
        r"values must have shape \(B, T - 1\)",
        lambda t: _rollout(values=torch.zeros(2, 4)),
    ),
    (
        "llmbook.rlhf.ppo_rollout",
        "prompts of 15 tokens and n_new=24 must fit the context",
        lambda t: rlhf.ppo_rollout(
            _gpt(),
            _gpt(),
            rlhf.ValueHead(8),
            _tok(),
            _reward(),
            _prompts(2, 15),
            rlhf.PPOConfig(),
        ),
    ),
    (
        "llmbook.rlhf.ppo_update",
        "optimizer must be a torch optimizer",
        lambda t: _ppo_update_bad_optimizer(),
    ),
    (
        "llmbook.rlhf.train_ppo",
        r"reference must have the policy's vocabulary",
        lambda t: rlhf.train_ppo(
            _gpt(), _gpt(400), _tok(), _reward(), _prompts(), rlhf.PPOConfig()
        ),
    ),
    (
        "llmbook.rlhf.train_grpo",
        "prompts must be a \\(B, P\\) int64 tensor",
        lambda t: rlhf.train_grpo(
            _gpt(), _gpt(), _tok(), _reward(), _prompts().float(), rlhf.GRPOConfig()
        ),
    ),
    ("llmbook.rlhf.zoo_ppo", "recipe must be an llmbook.zoo.Recipe", lambda t: _zoo(rlhf.zoo_ppo)),
    (
        "llmbook.rlhf.zoo_grpo",
        "recipe must be an llmbook.zoo.Recipe",
        lambda t: _zoo(rlhf.zoo_grpo),
    ),
    (
        "llmbook.rlhf.Violation",
        "start must be an integer >= 0",
        lambda t: rlhf.Violation("r", "w", -1),
    ),
    ("llmbook.rlhf.Rule", "flags must be callable", lambda t: rlhf.Rule("r", None)),
    (
        "llmbook.rlhf.banned_words_rule",
        "banned must hold at least one non-empty lower-case word",
        lambda t: rlhf.banned_words_rule("tragic", ["Death"]),
    ),
    (
        "llmbook.rlhf.repetition_rule",
        "name must be a non-empty str",
        lambda t: rlhf.repetition_rule(""),
    ),
    (
        "llmbook.rlhf.critique",
        "rules must be a non-empty list of Rule",
        lambda t: rlhf.critique("a", []),
    ),
    (
        "llmbook.rlhf.critique_and_revise",
        r"n_prompt must be an integer in \[1, 3\]",
        lambda t: rlhf.critique_and_revise(
            _gpt(), _tok(), _prompts(2, 4), 4, [rlhf.repetition_rule()]
        ),
    ),
]
