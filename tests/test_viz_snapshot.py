"""Frames built from the simulation core: catalogue, interests, occlusion weights, env rendering."""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pytest
import torch

from recsim_env.render.snapshot import InterestSummary, ItemCatalogue


def test_interests_split_multi_category_items_evenly() -> None:
    catalogue = ItemCatalogue(
        titles=(None, "a", "b", "c", "d"), categories=((), ("A",), ("A", "B"), ("C",), ())
    )
    # softmax over items 1..4 of [0, 0, ln 2, 0] = [0.2, 0.2, 0.4, 0.2]; item 4 has no category.
    interests = InterestSummary(catalogue, top=2)(torch.tensor([0.0, 0.0, math.log(2.0), 0.0]))
    assert [i.category for i in interests] == ["C", "A"]
    assert [i.prob for i in interests] == pytest.approx([0.4, 0.3])
    assert InterestSummary(ItemCatalogue((None, "x"), ((), ())))(torch.zeros(1)) == ()


def test_catalogue_view_shows_first_category_and_empty_slots() -> None:
    catalogue = ItemCatalogue(titles=(None, "Toy Story (1995)"), categories=((), ("Animation", "Comedy")))
    assert catalogue.view(1).label == "Toy Story (1995)"
    assert catalogue.view(1).category == "Animation"
    assert catalogue.view(0).label == "(empty slot)"
