"""Box regression deltas (wsl.structures.box_coder) against hand-computed values, their inverse,
wetectron's clamp, and torchvision's coder on shifted boxes."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from wsl.structures.box_coder import BBOX_REG_WEIGHTS, decode_deltas, encode_deltas
from wsl.structures.boxes import continuous_to_inclusive, inclusive_to_continuous

PROPOSAL = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10 pixels, centre (5, 5)


def test_encode_by_hand() -> None:
    # Target 20 x 20 at centre (15, 15): dx = 10 * (15 - 5) / 10, dw = 5 * log(20 / 10).
    # Target 10 wide at x centre 2 + 5 = 7, 20 high at y centre 0 + 10 = 10:
    # dx = 10 * (7 - 5) / 10 = 2, dy = 10 * (10 - 5) / 10 = 5, dw = 0, dh = 5 log 2.
    targets = torch.tensor([[5.0, 5.0, 24.0, 24.0], [2.0, 0.0, 11.0, 19.0]])
    deltas = encode_deltas(targets, PROPOSAL.expand(2, 4), weights=BBOX_REG_WEIGHTS)
    log2 = math.log(2)
    expected = torch.tensor([[10.0, 10.0, 5 * log2, 5 * log2], [2.0, 5.0, 0.0, 5 * log2]])
    torch.testing.assert_close(deltas, expected)


def test_encode_of_the_proposal_itself_is_zero() -> None:
    assert torch.equal(encode_deltas(PROPOSAL, PROPOSAL), torch.zeros(1, 4))


def test_decode_inverts_encode() -> None:
    gen = torch.Generator().manual_seed(0)
    x1y1 = torch.rand(50, 2, generator=gen, dtype=torch.float64) * 300
    proposals = torch.cat([x1y1, x1y1 + torch.rand(50, 2, generator=gen) * 200], dim=1)
    x1y1 = torch.rand(50, 2, generator=gen, dtype=torch.float64) * 300
    targets = torch.cat([x1y1, x1y1 + torch.rand(50, 2, generator=gen) * 200], dim=1)
    decoded = decode_deltas(encode_deltas(targets, proposals), proposals)
    torch.testing.assert_close(decoded, targets)


def test_decode_per_class_sets() -> None:
    # Two sets of deltas per proposal (class-specific regression): each decodes on its own.
    targets = torch.tensor([[5.0, 5.0, 24.0, 24.0], [2.0, 0.0, 11.0, 19.0]])
    deltas = encode_deltas(targets, PROPOSAL.expand(2, 4)).reshape(1, 8)
    torch.testing.assert_close(decode_deltas(deltas, PROPOSAL), targets.reshape(1, 8))


def test_decode_clamps_dw_dh() -> None:
    # dw / 5 = 10 is clamped to log(1000 / 16): the box grows 62.5 times, not e^10 times.
    # Width 625 around centre 5: x1 = 5 - 312.5, x2 = 5 + 312.5 - 1.
    decoded = decode_deltas(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), PROPOSAL)
    torch.testing.assert_close(decoded, torch.tensor([[-307.5, -307.5, 316.5, 316.5]]))
    # Below the clip, nothing is clamped: dw / 5 = 1 gives e times the width.
    decoded = decode_deltas(torch.tensor([[0.0, 0.0, 5.0, 0.0]]), PROPOSAL)
    half = 5 * math.e
    torch.testing.assert_close(decoded, torch.tensor([[5 - half, 0.0, 5 + half - 1, 9.0]]))


def test_agrees_with_torchvision_on_shifted_boxes() -> None:
    # torchvision's coder has no + 1: on boxes with an exclusive end it computes the same.
    gen = torch.Generator().manual_seed(1)
    x1y1 = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 300
    proposals = torch.cat([x1y1, x1y1 + torch.rand(40, 2, generator=gen) * 200], dim=1)
    targets = proposals + torch.randn(40, 4, generator=gen, dtype=torch.float64) * 10
    coder = BoxCoder(BBOX_REG_WEIGHTS)
    theirs = coder.encode_single(
        inclusive_to_continuous(targets), inclusive_to_continuous(proposals)
    )
    torch.testing.assert_close(encode_deltas(targets, proposals), theirs)
    deltas = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    theirs = coder.decode_single(deltas, inclusive_to_continuous(proposals))
    theirs = continuous_to_inclusive(theirs.reshape(-1, 4)).reshape(40, 8)
    torch.testing.assert_close(decode_deltas(deltas, proposals), theirs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="both be"):
        encode_deltas(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="4 M"):
        decode_deltas(torch.zeros(1, 6), PROPOSAL)
