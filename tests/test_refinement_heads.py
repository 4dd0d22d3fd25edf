"""The refinement heads: shapes, softmax rows, initialisation, test-time scores."""

from __future__ import annotations

import pytest
import torch

from wsl.models.refinement import RefinementHeads, refined_region_scores


def test_streams_give_softmax_rows_over_classes_and_background() -> None:
    torch.manual_seed(0)
    heads = RefinementHeads(in_features=8, num_classes=4, num_streams=3)
    scores = heads(torch.randn(5, 8) * 50)  # large logits: rows far from uniform
    assert len(scores) == 3
    for s in scores:
        assert s.shape == (5, 5) and s.dtype == torch.float32
        assert bool((s >= 0).all())
        torch.testing.assert_close(s.sum(dim=1), torch.ones(5))
    assert not torch.allclose(scores[0], scores[1])  # each stream its own classifier


def test_initialisation_as_the_authors() -> None:
    torch.manual_seed(0)
    heads = RefinementHeads(in_features=4096, num_classes=20, num_streams=2)
    for stream in heads.streams:
        assert stream.weight.shape == (21, 4096)
        assert stream.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert bool((stream.bias == 0).all())


def test_autocast_keeps_float32() -> None:
    heads = RefinementHeads(in_features=8, num_classes=2, num_streams=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (scores,) = heads(torch.randn(3, 8).bfloat16())
    assert scores.dtype == torch.float32


def test_refined_scores_average_streams_and_drop_background() -> None:
    a = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    b = torch.tensor([[0.3, 0.5, 0.2], [0.1, 0.3, 0.6]])
    expected = torch.tensor([[0.4, 0.2], [0.2, 0.7]])
    torch.testing.assert_close(refined_region_scores([a, b]), expected)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="num_streams must be at least 1"):
        RefinementHeads(8, 4, num_streams=0)
    with pytest.raises(ValueError, match="at least one stream"):
        refined_region_scores([])
