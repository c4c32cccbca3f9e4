"""Tests of llmbook.reward: the genre lexicon recomputed by hand, the reward's definition,
and the prompts. The lexicon is exact arithmetic on counts (compared at 1e-12)."""

import math
from collections import Counter

import pytest
import torch

from llmbook.corpus import play_text, split_plays
from llmbook.reward import (
    GENRES,
    LexiconReward,
    genre_lexicon,
    play_genre,
    task_prompts,
    words,
)
from llmbook.tokenizer import BPETokenizer


def test_play_genres_come_from_the_corpus_folders():
    assert play_genre("hamlet") == "tragedies" and play_genre("twelfth-night") == "comedies"
    assert {play_genre(n) for n in split_plays("all")} == set(GENRES)


def test_words_lower_cases_and_keeps_inner_apostrophes():
    assert words("Is't so, MASTER Ford? 'Tis well.") == [
        "is't",
        "so",
        "master",
        "ford",
        "tis",
        "well",
    ]


def test_lexicon_equals_a_direct_count():
    lex = genre_lexicon("comedies", "tragedies", min_count=50, pseudo_count=0.5)
    pos, neg = Counter(), Counter()
    for name in split_plays("train"):
        target = {"comedies": pos, "tragedies": neg}.get(play_genre(name))
        if target is not None:
            for line in play_text(name).split("\n"):
                if line and not line.endswith(":"):
                    target.update(words(line))
    vocab = len(set(pos) | set(neg))
    n_pos, n_neg = sum(pos.values()), sum(neg.values())
    for w in ("master", "mistress", "gods", "noble"):
        want = math.log((pos[w] + 0.5) / (n_pos + 0.5 * vocab)) - math.log(
            (neg[w] + 0.5) / (n_neg + 0.5 * vocab)
        )
        assert lex[w] == pytest.approx(want, rel=1e-12)
    assert lex["master"] > 1 and lex["gods"] < -1  # comic and tragic words
    assert list(lex.values()) == sorted(lex.values(), reverse=True)
    assert all(pos[w] + neg[w] >= 50 for w in lex)
    assert "romeo" not in lex and "falstaff" not in lex  # names (capitalised) stay out


def test_lexicon_is_antisymmetric_in_the_genres():
    a, b = genre_lexicon("comedies", "tragedies"), genre_lexicon("tragedies", "comedies")
    assert a.keys() == b.keys() and all(a[w] == pytest.approx(-b[w], abs=1e-12) for w in a)


def test_reward_is_the_mean_word_score():
    r = LexiconReward({"merry": 1.0, "murder": -2.0})
    got = r(["A merry, merry murder!", "", "nothing here", "merry"])
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    assert r.score("merry men") == 0.5 and r.best_word == "merry" and r.max_reward == 1.0
    assert r([r.best_word * 1 + " " + r.best_word]).item() == r.max_reward


def test_prompts_start_at_lines_and_are_reproducible():
    tok = BPETokenizer.train(split_plays_text := play_text("twelfth-night"), 300)
    a = task_prompts(tok, 16, 6, split="validation", seed=1)
    assert a.shape == (16, 6) and a.dtype == torch.int64
    assert torch.equal(a, task_prompts(tok, 16, 6, split="validation", seed=1))
    assert not torch.equal(a, task_prompts(tok, 16, 6, split="validation", seed=2))
    lines = set(split_plays_text.split("\n")) | set(play_text("julius-caesar").split("\n"))
    for row in a.tolist():
        start = tok.decode(row).split("\n")[0]
        assert any(line.startswith(start) for line in lines)
        assert not tok.decode(row).split("\n")[0].endswith(":")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: genre_lexicon("comedies", "comedies"), "must differ"),
        (lambda: genre_lexicon("farces"), "positive must be one of"),
        (lambda: genre_lexicon(pseudo_count=0), "pseudo_count"),
        (lambda: genre_lexicon(split="validation"), "no plays of both"),
        (lambda: LexiconReward({}), "non-empty dict"),
        (lambda: LexiconReward({"Merry": 1.0}), "lower-case"),
        (lambda: LexiconReward({"merry": float("nan")}), "finite"),
        (lambda: LexiconReward({"merry": 1.0})("merry"), "list of str"),
        (lambda: play_genre("nope"), "name must name a play"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _tiny_gpt(seed=0, V=300):
    from llmbook.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=16)
    return GPT(cfg).eval()


def test_sample_responses_appends_n_new_tokens_and_masks_them():
    from llmbook.reward import sample_responses

    model, prompts = _tiny_gpt(), torch.randint(0, 300, (5, 4))
    ids, mask = sample_responses(model, prompts, 6, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (5, 10) and torch.equal(ids[:, :4], prompts)
    assert torch.equal(mask, torch.cat([torch.zeros(5, 4), torch.ones(5, 6)], 1))
    again, _ = sample_responses(model, prompts, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)


def test_evaluate_policy_kl_is_zero_against_itself_and_matches_the_definition():
    from llmbook.alignment import sequence_logprobs
    from llmbook.reward import evaluate_policy, sample_responses

    tok = BPETokenizer.train(play_text("twelfth-night")[:20_000], 300)
    policy, ref = _tiny_gpt(0), _tiny_gpt(1)
    reward = LexiconReward({"the": 1.0, "and": -1.0})
    prompts = torch.randint(0, 300, (8, 4))
    same = evaluate_policy(policy, policy, tok, reward, prompts, 6, seed=3)
    assert same.kl == 0.0 and len(same.texts) == 8
    got = evaluate_policy(policy, ref, tok, reward, prompts, 6, seed=3)
    ids, mask = sample_responses(policy, prompts, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = sequence_logprobs(policy(ids)[0], ids, mask) - sequence_logprobs(
            ref(ids)[0], ids, mask
        )
    assert got.kl == pytest.approx(diff.double().mean().item(), rel=1e-6)
    texts = [tok.decode(r[4:].tolist()) for r in ids]
    assert list(got.texts) == texts and got.reward == pytest.approx(reward(texts).mean().item())
    assert got.reward == same.reward  # the same seed draws the same responses


def test_sampling_rejects_bad_input():
    from llmbook.reward import sample_responses

    model = _tiny_gpt()
    with pytest.raises(ValueError, match="n_new must fit the context"):
        sample_responses(model, torch.zeros(1, 10, dtype=torch.int64), 7)
    with pytest.raises(ValueError, match="prompts must be a"):
        sample_responses(model, torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="temperature"):
        sample_responses(model, torch.zeros(1, 2, dtype=torch.int64), 2, temperature=0)


def test_preference_pairs_label_by_the_reward():
    from llmbook.reward import Preferences, preference_pairs

    tok = BPETokenizer.train(play_text("twelfth-night")[:20_000], 300)
    policy, prompts = _tiny_gpt(0), torch.randint(0, 300, (40, 4))
    reward = LexiconReward(
        {w: float(i % 7 - 3) for i, w in enumerate(sorted(set(words(play_text("twelfth-night")))))}
    )
    hard = preference_pairs(policy, tok, reward, prompts, 6, seed=1)
    assert isinstance(hard, Preferences) and 0 < len(hard) <= 40
    assert bool((hard.reward_chosen > hard.reward_rejected).all())  # ties dropped
    for ids, r in ((hard.chosen, hard.reward_chosen), (hard.rejected, hard.reward_rejected)):
        texts = [tok.decode(row[4:].tolist()) for row in ids]
        assert torch.equal(reward(texts), r)  # the stored rewards are the responses'
    assert torch.equal(hard.response_mask[0], torch.tensor([0.0] * 4 + [1.0] * 6))
    noisy = preference_pairs(policy, tok, reward, prompts, 6, noise=50.0, seed=1)
    assert len(noisy) == 40  # every pair kept; with a huge noise, about half are flipped
    flipped = (noisy.reward_chosen < noisy.reward_rejected).sum().item()
    assert 5 <= flipped <= 35


def test_preferences_check_shapes():
    from llmbook.reward import Preferences

    z = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="must have one shape"):
        Preferences(z, torch.zeros(3, 4), z, torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="reward_chosen must have shape"):
        Preferences(z, z, z, torch.zeros(2), torch.zeros(3))
