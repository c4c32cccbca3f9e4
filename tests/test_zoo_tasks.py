"""The zoo's ``task`` field (Chapter 14): a recipe may train on needle retrieval instead of
next-token prediction, and adding the field changed no existing recipe's cache key."""

from __future__ import annotations

import dataclasses

import pytest

from llmbook import __version__, zoo

#: Cache keys computed before ``Recipe.task`` existed (llmbook 0.1.0).
KEYS_BEFORE_TASK = {
    "shakespeare-bpe-tiny": "8e9bce0cddf2e1e0",
    "shakespeare-bpe-small": "f3b118e69c45c939",
    "shakespeare-bpe-medium": "9522acf011df5acc",
    "scaling-1x16-800k": "2b8572a230926b66",
    "scaling-3x80-224k-seed1": "b191985d7fdd9a71",
}


@pytest.mark.skipif(__version__ != "0.1.0", reason="keys hash the version; recorded for 0.1.0")
def test_existing_recipes_keep_their_cache_keys():
    for name, key in KEYS_BEFORE_TASK.items():
        assert zoo.recipe_key(name) == key, name


def test_the_default_task_is_left_out_of_the_identity_and_others_are_kept():
    for recipe in zoo.RECIPES.values():
        identity = recipe.identity()
        assert ("task" in identity) == (recipe.task != "lm")
    small = zoo.get_recipe("shakespeare-bpe-small")
    needle = dataclasses.replace(small, task="needle")
    assert needle.identity()["task"] == "needle"
    assert zoo.recipe_key(needle) != zoo.recipe_key(small)
    assert needle.data_spec() == small.data_spec()  # the same token files


def test_a_needle_recipe_is_registered_and_bad_tasks_are_refused():
    assert zoo.get_recipe("needle-bytes-rope").task == "needle"
    with pytest.raises(ValueError, match="task must be one of"):
        zoo.Recipe("x", "", {}, {}, task="qa")
