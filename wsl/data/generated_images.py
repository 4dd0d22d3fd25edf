"""How the generated data set's images look and are drawn: the classes (a shape in a colour),
the looks of the difficulty levels, and one image of objects with their exact boxes.

Each class is a distinct (shape, colour) pair (red circle, green square, blue triangle,
...), strong enough cues for a small CNN trained from scratch on image-level labels to
learn in CPU seconds. An image holds its objects on a background; objects after the first may
be cut by the border (``truncated``: box clipped to the visible pixels) or small (a visible box
under :data:`DIFFICULT_SIDE`, square root of its area: ``difficult``). Boxes are the exact
bounding boxes of each object's pixels.

``difficulty`` sets the look (:data:`LOOKS`): ``easy`` (plain backgrounds), ``medium`` (gray
clutter), ``hard`` (clutter, blobs in class colours, smaller objects, colour jitter) or
``parts``: larger objects of two parts, the class shape as a *head* on a *body* (an ellipse of
the class colour muted towards gray). The head is the discriminative part but covers only
about 30 % of the object's box, the case of WSDDN's best known failure (its top box on the
most discriminative part), which OICR and PCL set out to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "star", "ring", "diamond", "bar")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 175, 45),
    "blue": (35, 65, 220),
    "yellow": (240, 220, 35),
    "magenta": (215, 40, 205),
    "cyan": (35, 205, 215),
    "orange": (245, 135, 20),
    "white": (248, 248, 248),
}
MAX_CLASSES = 20
DIFFICULT_SIDE = 12  # an object whose visible box has sqrt(width * height) below this is difficult
MIN_OBJECT_SIDE = 20  # objects that are not meant to be difficult are drawn at least this large
DIFFICULTIES = ("easy", "medium", "hard", "parts")
BODY_MUTING = 0.6  # a two-part object's body: its class colour mixed this much with mid-gray


@dataclass(frozen=True)
class ClassStyle:
    """How a class looks: its name, shape and RGB colour."""

    name: str
    shape: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """What a difficulty level changes in the pictures."""

    object_size: tuple[float, float]  # object side as a fraction of the image's shorter side
    noise: float  # std of the Gaussian pixel noise
    colour_jitter: float  # std of the per-object colour change
    clutter: bool  # gray lines and blobs in the background
    distractors: bool  # irregular blobs in class colours
    parts: bool = False  # objects of two parts: the class shape as a head on a muted body


LOOKS = {
    "easy": Look((0.2, 0.5), noise=3.0, colour_jitter=4.0, clutter=False, distractors=False),
    "medium": Look((0.17, 0.45), noise=6.0, colour_jitter=10.0, clutter=True, distractors=False),
    "hard": Look((0.12, 0.35), noise=10.0, colour_jitter=22.0, clutter=True, distractors=True),
    "parts": Look(
        (0.3, 0.6), noise=4.0, colour_jitter=6.0, clutter=False, distractors=False, parts=True
    ),
}


@dataclass(frozen=True)
class GeneratedObject:
    """One drawn object; ``box`` is its visible extent, 0-based inclusive ``x1, y1, x2, y2``;
    ``parts`` the visible extents of its parts (two-part objects: body, head; else none)."""

    class_index: int
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool
    parts: tuple[tuple[int, int, int, int], ...] = ()


def class_styles(num_classes: int) -> list[ClassStyle]:
    """The classes of a generated set, in label order.

    Up to 8 classes are named by their shape ("circle", "square", ...); beyond 8 shapes
    repeat in other colours and every class is named ``<colour>_<shape>``.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    colours = list(COLOURS)
    styles = []
    for i in range(num_classes):
        shape, colour = SHAPES[i % len(SHAPES)], colours[(i + i // len(SHAPES)) % len(colours)]
        name = shape if num_classes <= len(SHAPES) else f"{colour}_{shape}"
        styles.append(ClassStyle(name, shape, COLOURS[colour]))
    return styles


def _shape_polygon(shape: str) -> np.ndarray:
    """Outline of a polygonal shape in unit coordinates ``[-1, 1]``, as ``(P, 2)``."""
    if shape in ("square", "bar"):
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float)
    if shape == "triangle":
        return np.array([(0, -1), (1, 1), (-1, 1)], dtype=float)
    if shape == "diamond":
        return np.array([(0, -1), (1, 0), (0, 1), (-1, 0)], dtype=float)
    if shape == "cross":
        t = 0.33
        quarter = [(-t, -1), (t, -1), (t, -t)]
        points = []
        for k in range(4):  # rotate the quarter by 90 degrees four times
            c, s = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
            points += [(x * c - y * s, x * s + y * c) for x, y in quarter]
        return np.array(points)
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    raise ValueError(f"no polygon for shape {shape!r}")


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, centre: np.ndarray, half: np.ndarray
) -> None:
    """Fill ``shape`` (value 255) centred at ``centre`` with half-extents ``half`` (x, y)."""
    box = [*(centre - half), *(centre + half)]
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        draw.ellipse([*(centre - 0.55 * half), *(centre + 0.55 * half)], fill=0)
    else:
        points = centre + _shape_polygon(shape) * half
        draw.polygon([tuple(p) for p in points], fill=255)


def background(rng: np.random.Generator, width: int, height: int, look: Look) -> Image.Image:
    """A gray-ish gradient, with gray clutter lines and blobs when ``look.clutter``."""
    low, high = np.sort(rng.uniform(70, 190, size=2))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
    gray = low + (high - low) * ramp
    tint = rng.uniform(-8, 8, size=3)
    image = Image.fromarray(np.clip(gray[..., None] + tint, 0, 255).astype(np.uint8))
    if look.clutter:
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(4, 11)):
            level = int(rng.uniform(50, 200))
            ends = rng.uniform(0, 1, size=4) * [width, height, width, height]
            draw.line(list(ends), fill=(level,) * 3, width=int(rng.integers(1, 4)))
        for _ in range(rng.integers(2, 6)):
            level = int(rng.uniform(50, 200))
            centre = rng.uniform(0, 1, size=2) * [width, height]
            half = rng.uniform(0.05, 0.2, size=2) * min(width, height)
            draw.ellipse([*(centre - half), *(centre + half)], fill=(level,) * 3)
    return image


def _separated(box: np.ndarray, others: list[np.ndarray], gap: float) -> bool:
    """Whether ``box`` keeps at least ``gap`` pixels from each of ``others`` (x1, y1, x2, y2)."""
    return all(
        box[0] > o[2] + gap or o[0] > box[2] + gap or box[1] > o[3] + gap or o[1] > box[3] + gap
        for o in others
    )


def draw_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    classes: Sequence[int],
    styles: Sequence[ClassStyle],
    look: Look,
) -> tuple[Image.Image, list[GeneratedObject]]:
    """Draw one image holding objects of ``classes`` (the first is always placed whole).

    Objects after the first may be small (difficult) or cut by the border (truncated), and
    are dropped when no free spot is found; a repeat of the first class keeps a wide gap.
    """
    image = background(rng, width, height, look)
    side = min(width, height)
    placed: list[tuple[int, np.ndarray, np.ndarray]] = []  # (class, centre, half extents)
    full_boxes: list[np.ndarray] = []
    for k, class_index in enumerate(classes):
        shape = styles[class_index].shape
        small = k > 0 and rng.random() < 0.15
        truncate = k > 0 and not small and rng.random() < 0.2
        gap = 0.15 * side if k > 0 and class_index == classes[0] else 4.0
        for attempt in range(40):
            if small:
                size = rng.uniform(6, DIFFICULT_SIDE - 1)
            else:  # shrink a little with every failed attempt, so that crowded images fill up
                size = max(rng.uniform(*look.object_size) * side, MIN_OBJECT_SIDE)
                size *= 1.0 - attempt / 60
            half = half_extents(rng, shape, size)
            lo, hi = half, np.array([width - 1, height - 1]) - half
            if np.any(hi < lo):
                continue
            centre = rng.uniform(lo, hi)
            if truncate:  # push the object over one border so 15-45 % of it is cut
                axis, cut = int(rng.integers(2)), rng.uniform(0.15, 0.45) * 2 * half
                centre[axis] = lo[axis] - cut[axis] if rng.random() < 0.5 else hi[axis] + cut[axis]
            full = np.concatenate([centre - half, centre + half])
            if _separated(full, full_boxes, gap):
                placed.append((class_index, centre, half))
                full_boxes.append(full)
                break
    draw = ImageDraw.Draw(image)
    if look.distractors:
        for _ in range(rng.integers(2, 5)):
            centre = rng.uniform(0, 1, size=2) * [width, height]
            radius = rng.uniform(0.04, 0.12) * side
            blob = np.concatenate([centre - radius, centre + radius])
            if not _separated(blob, full_boxes, 3.0):
                continue
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(6, 10))))
            radii = radius * rng.uniform(0.5, 1.0, size=angles.size)
            points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
            colour = styles[int(rng.integers(len(styles)))].colour
            draw.polygon([tuple(p) for p in points], fill=colour)
    objects = [
        paint_object(image, rng, class_index, styles[class_index], centre, half, look)
        for class_index, centre, half in placed
    ]
    return add_noise(image, rng, look), objects


def half_extents(rng: np.random.Generator, shape: str, size: float) -> np.ndarray:
    """Half width and height (x, y) of an object of ``shape`` and side ``size``: a slightly
    random aspect ratio; a bar is 2.5 times longer than wide, lying or standing at random."""
    aspect = np.exp(rng.uniform(-0.15, 0.15))
    half = np.array([size * aspect, size / aspect]) / 2
    if shape == "bar":
        half = np.array([size, 0.4 * size]) / 2
        half = half[::-1] if rng.random() < 0.5 else half
    return half


def paint_object(
    image: Image.Image,
    rng: np.random.Generator,
    class_index: int,
    style: ClassStyle,
    centre: np.ndarray,
    half: np.ndarray,
    look: Look,
) -> GeneratedObject:
    """Paint one object of ``style`` (its parts, with one colour jitter) centred at ``centre``
    with half extents ``half`` into ``image``; return it with its visible box (the border may
    cut it: ``truncated``)."""
    width, height = image.size
    pad = max(width, height)  # masks are drawn on a padded canvas to see what the border cuts
    mask = Image.new("L", (width + 2 * pad, height + 2 * pad))
    jitter = rng.normal(0, look.colour_jitter, size=3)
    part_boxes = []
    for shape, part_centre, part_half, base in _object_parts(style, centre, half, look.parts):
        layer = Image.new("L", mask.size)
        _draw_shape(ImageDraw.Draw(layer), shape, part_centre + pad, part_half)
        mask.paste(255, mask=layer)
        visible_part = layer.crop((pad, pad, pad + width, pad + height))
        colour = np.clip(np.array(base) + jitter, 0, 255).astype(int)
        image.paste(tuple(colour.tolist()), mask=visible_part)
        if look.parts and (part_box := visible_part.getbbox()) is not None:
            part_boxes.append((part_box[0], part_box[1], part_box[2] - 1, part_box[3] - 1))
    full_box = mask.getbbox()
    visible = mask.crop((pad, pad, pad + width, pad + height))
    x1, y1, x2, y2 = visible.getbbox()  # PIL boxes are exclusive on the right and bottom
    return GeneratedObject(
        class_index=class_index,
        box=(x1, y1, x2 - 1, y2 - 1),
        truncated=full_box != (x1 + pad, y1 + pad, x2 + pad, y2 + pad),
        difficult=np.sqrt((x2 - x1) * (y2 - y1)) < DIFFICULT_SIDE,
        parts=tuple(part_boxes),
    )


def add_noise(image: Image.Image, rng: np.random.Generator, look: Look) -> Image.Image:
    """``image`` with the look's Gaussian pixel noise, rounded to uint8."""
    width, height = image.size
    pixels = np.asarray(image, dtype=float) + rng.normal(0, look.noise, size=(height, width, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _object_parts(
    style: ClassStyle, centre: np.ndarray, half: np.ndarray, parts: bool
) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int, int]]]:
    """What to draw for one object, in order: ``(shape, centre, half extents, RGB colour)``.

    One part, the class shape in the class colour; or, with ``parts``, two: a body (an ellipse
    over the lower 70 % of the object's box, in the class colour muted towards gray by
    :data:`BODY_MUTING`) under a head (the class shape in the class colour, 55 % of the
    object's width and height, at its top). The head, about 30 % of the object's box, is
    the discriminative part: a box around it alone overlaps the object's box by IoU ~0.3.
    """
    if not parts:
        return [(style.shape, centre, half, style.colour)]
    muted = np.array(style.colour) * (1 - BODY_MUTING) + 128 * BODY_MUTING
    body = (
        "circle",
        centre + np.array([0, 0.3 * half[1]]),
        half * [1.0, 0.7],
        tuple(np.rint(muted).astype(int)),
    )
    head = (style.shape, centre - np.array([0, 0.45 * half[1]]), 0.55 * half, style.colour)
    return [body, head]
