"""Boxes and labels stay legible on any colour and inside the image (pixel checks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsl.drawing import (
    contrast_colour,
    draw_boxes,
    heatmap_picture,
    overlay_heatmap,
    side_by_side,
)

RED = (0xE6, 0x19, 0x4B)  # PALETTE[0], the generated data's first class colour


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def canvas(height: int = 200, width: int = 300, colour: tuple[int, ...] = (200, 200, 200)):
    return torch.tensor(colour, dtype=torch.uint8)[:, None, None].repeat(1, height, width)


def pixels_of(picture: torch.Tensor, colour: tuple[int, ...]) -> np.ndarray:
    """A boolean ``H x W`` mask of the pixels exactly of ``colour``."""
    return (picture.permute(1, 2, 0).numpy() == np.array(colour, dtype=np.uint8)).all(axis=-1)


@pytest.mark.parametrize(
    ("colour", "expected"),
    [("#ffffff", "#000000"), ("#000000", "#ffffff"), ("#000075", "#ffffff"),
     ("#ffe119", "#000000"), ("#e6194b", "#000000"), ("#911eb4", "#ffffff")],
)  # fmt: skip
def test_contrast_colour_picks_the_higher_wcag_contrast(colour: str, expected: str) -> None:
    # #e6194b: relative luminance 0.187 -> 4.7:1 against black, 4.4:1 against white
    assert contrast_colour(colour) == expected


def test_a_red_box_and_label_on_a_red_object_stay_visible() -> None:
    image = canvas()
    image[:, 60:160, 100:200] = torch.tensor(RED)[:, None, None]  # the object, in its class colour
    box = torch.tensor([[100.0, 60, 199, 159]])
    picture = draw_boxes(image, box, labels=["circle"], colors="#e6194b", min_side=1)
    assert tuple(picture[:, 100, 100].tolist()) == RED  # the band: on the box's edge, inwards
    assert tuple(picture[:, 100, 99].tolist()) == (0, 0, 0)  # a black line just outside it
    assert tuple(picture[:, 100, 102].tolist()) == (0, 0, 0)  # and one inside: on the object
    # The label's tag, above the box, is filled black (not the object's red), its text reddish.
    above = picture[:, :59, :].permute(1, 2, 0).numpy().astype(int)
    tag = (above != 200).any(axis=-1)  # what was drawn on the grey background
    rows, columns = np.nonzero(tag)
    assert rows.max() == 58 and columns.min() == 99  # just above the box's outer line
    black = (above[tag] == 0).all(axis=-1).mean()
    reddish = (np.abs(above[tag] - np.array(RED)).max(axis=-1) < 60).sum()
    assert black > 0.6 and reddish > 20, (black, reddish)


def test_labels_stay_inside_the_image_and_are_not_clipped() -> None:
    image = canvas()
    middle = draw_boxes(image, torch.tensor([[100.0, 60, 150, 100]]), ["triangle"], "#ffffff", 2, 1)
    text_pixels = (
        pixels_of(middle, (255, 255, 255)).sum()
        - pixels_of(
            draw_boxes(image, torch.tensor([[100.0, 60, 150, 100]]), None, "#ffffff", 2, 1),
            (255, 255, 255),
        ).sum()
    )
    # the same label for a box at the right edge, and one at the top edge
    for box in ([270.0, 60, 299, 100], [100.0, 0, 150, 40]):
        edge = draw_boxes(image, torch.tensor([box]), ["triangle"], "#ffffff", 2, 1)
        bare = draw_boxes(image, torch.tensor([box]), None, "#ffffff", 2, 1)
        changed = pixels_of(edge, (255, 255, 255)) & ~pixels_of(bare, (255, 255, 255))
        assert changed.sum() >= text_pixels * 0.9, box  # every letter drawn (some on the box)
        tag = pixels_of(edge, (0, 0, 0)) & ~pixels_of(bare, (0, 0, 0))
        columns = np.nonzero(tag.any(axis=0))[0]
        if box[0] == 270:
            assert columns.max() == 299 and columns.min() < 270  # moved left, ends at the edge
        else:
            rows = np.nonzero(tag.any(axis=1))[0]
            assert rows.min() == 0 and rows.max() < 40  # inside the box, at the top


def test_heatmap_picture_has_a_title_and_a_colour_bar() -> None:
    image = canvas(96, 128)
    heat = torch.zeros(6, 8)
    heat[2:4, 2:4] = 1.0
    picture = heatmap_picture(image, heat, title="000007 circle 0.93")
    overlay = overlay_heatmap(image, heat)  # 384 x 512: enlarged 4x
    # 28 px of title above, 8 px below; the colour bar and its ticks (72 px) to the right
    assert picture.shape == (3, 28 + 384 + 8, 512 + 72)
    assert torch.equal(picture[:, 28 : 28 + 384, :512], overlay)  # the overlay, pixel for pixel
    title = picture[:, :28, :512].min(dim=0).values
    assert (title < 100).sum() > 50 and (title == 255).float().mean() > 0.8  # dark text on white
    bar = picture[:, 28 : 28 + 384, 512 + 12 + 8]  # a column through the middle of the bar
    assert bar[:, 2].tolist() == [132, 0, 0]  # jet(1), dark red, at the top
    assert bar[:, -3].tolist() == [0, 0, 132]  # jet(0), dark blue, at the bottom


def test_a_label_that_would_cover_another_moves_elsewhere() -> None:
    image = canvas()
    boxes = torch.tensor([[100.0, 60, 180, 120], [110.0, 62, 190, 130]])  # tops 2 px apart
    colours, labels = ["#ffffff", "#ffe119"], ["square", "square 0.00502"]

    def tag_pixels(keep: list[int]) -> int:
        """Pixels that the labels of boxes ``keep`` turn black (their tags: both colours are
        light, so the tags are black)."""
        chosen = [colours[i] for i in keep]
        drawn = draw_boxes(image, boxes[keep], [labels[i] for i in keep], chosen, 2, 1)
        bare = draw_boxes(image, boxes[keep], None, chosen, 2, 1)
        return int((pixels_of(drawn, (0, 0, 0)) & ~pixels_of(bare, (0, 0, 0))).sum())

    alone, both = [tag_pixels([0]), tag_pixels([1])], tag_pixels([0, 1])
    assert min(alone) > 200 and both >= 0.9 * sum(alone), (alone, both)  # no tag covers another


def test_side_by_side_puts_titled_panels_in_a_row() -> None:
    red = torch.zeros(3, 40, 50, dtype=torch.uint8)
    red[0] = 255
    blue = torch.zeros(3, 60, 30, dtype=torch.uint8)
    blue[2] = 255
    row = side_by_side([red, blue], ["WSDDN", "stream 3"])
    assert row.shape == (3, 60 + 30, 50 + 12 + 30)  # a 30 px title band; a 12 px gap
    pixels = row.permute(1, 2, 0)
    assert (pixels[30:70, :50] == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()
    assert (pixels[30:, 62:] == torch.tensor([0, 0, 255], dtype=torch.uint8)).all()
    assert (pixels[70:, :50] == 255).all() and (pixels[30:, 50:62] == 255).all()  # white fill
    for left, width in ((0, 50), (62, 30)):  # dark title text above each panel
        assert (pixels[:30, left : left + width] < 100).all(dim=-1).any()
    with pytest.raises(ValueError, match="2 pictures and 1 titles"):
        side_by_side([red, blue], ["WSDDN"])
