"""Bad-input probes of llmbook.reward (tests/test_bad_input.py runs them)."""

import torch

from llmbook.gpt import GPT, GPTConfig
from llmbook.reward import (
    LexiconReward,
    PolicyScore,
    Preferences,
    evaluate_policy,
    genre_lexicon,
    play_genre,
    preference_pairs,
    sample_responses,
    task_prompts,
    words,
)


def _gpt():
    return GPT(GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, d_model=8))


PROBES = [
    ("llmbook.reward.play_genre", "name must name a play", lambda t: play_genre(3)),
    ("llmbook.reward.words", "text must be a str", lambda t: words(None)),
    ("llmbook.reward.genre_lexicon", "min_count", lambda t: genre_lexicon(min_count=0)),
    ("llmbook.reward.LexiconReward", "non-empty dict", lambda t: LexiconReward([])),
    (
        "llmbook.reward.LexiconReward.score",
        "text must be a str",
        lambda t: LexiconReward({"a": 1.0}).score(3),
    ),
    (
        "llmbook.reward.LexiconReward",
        "texts\\[i\\] must be a str",
        lambda t: LexiconReward({"a": 1.0})([1]),
    ),
    ("llmbook.reward.task_prompts", "tokenizer must be", lambda t: task_prompts(None, 1, 1)),
    ("llmbook.reward.sample_responses", "policy must be", lambda t: sample_responses(None, 1, 1)),
    (
        "llmbook.reward.evaluate_policy",
        "reference must be",
        lambda t: evaluate_policy(_gpt(), None, None, None, torch.zeros(1, 1), 1),
    ),
    ("llmbook.reward.PolicyScore", "texts must be", lambda t: PolicyScore(0, 0, 0, 0, ["a"])),
    (
        "llmbook.reward.Preferences",
        "must have one shape",
        lambda t: Preferences(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3), 0, 0),
    ),
    (
        "llmbook.reward.preference_pairs",
        "tokenizer must be",
        lambda t: preference_pairs(_gpt(), None, None, None, 1),
    ),
]
NO_ARGUMENTS: set[str] = set()
