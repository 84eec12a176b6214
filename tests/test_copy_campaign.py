"""The copy campaign's measures on hand-made inputs."""

from __future__ import annotations

import numpy as np

from services.evaluation.copy_campaign import distinct_n, near_duplicate_rate, personalization


def test_distinct_n_counts_unique_ngrams_over_the_campaign():
    assert distinct_n(["a b c", "a b c"], 1) == 0.5
    assert distinct_n(["a b c", "d e f"], 2) == 1.0
    assert distinct_n(["圣诞 快乐"], 1) == 1.0  # Chinese counts by character


def test_near_duplicates_are_found_and_distinct_texts_are_not():
    same = "Keep your home baking fresh for afternoon tea in these pretty pantry tins."
    assert near_duplicate_rate([same, same, "A completely different sentence about garden lights at night."]) == 2 / 3
    assert near_duplicate_rate(["one two three four", "five six seven eight"]) == 0.0


def test_personalization_is_high_when_words_follow_their_shopper_and_chance_when_shuffled():
    rng = np.random.default_rng(0)
    own = rng.normal(size=(200, 16))
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    words = own + 0.3 * rng.normal(size=own.shape)
    words /= np.linalg.norm(words, axis=1, keepdims=True)
    assert personalization(words, own, seed=0) > 0.95
    shuffled = personalization(words[rng.permutation(200)], own, seed=0)
    assert 0.35 < shuffled < 0.65
