"""A small synthetic data set in PASCAL VOC2007 layout, identical byte for byte per seed.

``python -m wsl.data.generate --root DIR`` (or :func:`generate_voc`) writes::

    DIR/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}/..., classes.txt
    DIR/selective_search_data/voc_2007_{trainval,test}.mat

Each class is a distinct (shape, colour) pair (red circle, green square, blue triangle,
...), strong enough cues for a small CNN trained from scratch on image-level labels to
learn in CPU seconds. Images are slightly non-square (each side 80-100% of
``image_size``) and hold 1-3 objects; an image's first object cycles through the classes
so every class appears, non-difficult, in train, val and test alike. Some images hold two
well separated instances of one class. Objects cut by the border are ``truncated`` (box
clipped to the visible pixels); objects whose visible box is smaller than
:data:`DIFFICULT_SIDE` (square root of its area) are ``difficult``. Ground-truth boxes are
the exact bounding boxes of each object's pixels.

``difficulty`` sets the look: ``easy`` (plain backgrounds), ``medium`` (gray clutter),
``hard`` (clutter, blobs in class colours, smaller objects, colour jitter) or ``parts``:
larger objects of two parts, the class shape as a *head* on a *body* (an ellipse of the class
colour muted towards gray). The head is the discriminative part but covers only about 30 %
of the object's box, the case of WSDDN's best known failure (its top box on the most
discriminative part), which OICR and PCL set out to fix; proposals then include boxes around
each part and boxes growing from the head to the whole object, as selective search gives them
(:func:`_growth_boxes`).

The proposals are **synthetic**: boxes drawn to mimic selective search's recall (a few
tight boxes around every object, IoU >= 0.77 by construction, looser ones around it,
boxes around pairs of objects, and random boxes of many sizes and aspect ratios), in the
Fast R-CNN ``.mat`` format (``boxes``: 1xN cell of Kx4 ``[y1 x1 y2 x2]`` 1-based,
``images``: the ids). Real selective search on real images is
``data.proposals.source=selective_search``.

Completeness: everything is written into a hidden temporary folder under ``DIR`` and moved
into place at the end, the ``VOC2007`` folder last, so a ``VOC2007`` folder (and its
``ImageSets/Main/test.txt``, which ``make data`` checks) only exists once complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from wsl.data.bad_input import DataError
from wsl.data.proposal_mat import write_proposal_mat

log = logging.getLogger(__name__)

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
GROWTH = (1 / 3, 2 / 3)  # growth boxes: how far each edge goes from a head's box to its object's
BODY_MUTING = 0.6  # a two-part object's body: its class colour mixed this much with mid-gray
JPEG_QUALITY = 90
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by wsl.data.generate"


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


def _draw_image(
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


def _proposals(
    rng: np.random.Generator,
    objects: Sequence[GeneratedObject],
    width: int,
    height: int,
    count: int,
) -> np.ndarray:
    """About ``count`` unique, shuffled boxes (0-based inclusive xyxy, ints) inside the image.

    Around every object and every part of one, and every growth box of a two-part object
    (:func:`_growth_boxes`): a few tight boxes (each edge moved by at most 6 % of the box's
    side, so IoU >= 0.77) and looser ones; one box around each pair of objects; the rest
    random, of log-uniform size and aspect ratio 1:3 to 3:1.
    """
    boxes = []
    n_tight, n_loose = max(2, round(0.03 * count)), max(2, round(0.08 * count))
    for box in [b for obj in objects for b in (obj.box, *obj.parts, *_growth_boxes(obj))]:
        gt = np.array(box, dtype=float)
        sides = np.tile(gt[2:] - gt[:2] + 1, 2)
        limit = np.floor(0.06 * sides)
        tight = np.clip(np.rint(rng.normal(0, 0.03 * sides, size=(n_tight, 4))), -limit, limit)
        loose = np.rint(rng.normal(0, 0.2 * sides, size=(n_loose, 4)))
        boxes += [gt + tight, gt + loose]
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            corners = np.array([a.box, b.box], dtype=float)
            boxes.append(np.concatenate([corners[:, :2].min(0), corners[:, 2:].max(0)])[None])
    n_object = sum(len(b) for b in boxes)
    n_random = max(count - n_object, 0) + count // 10  # spare rows for duplicates
    scale = np.exp(rng.uniform(np.log(6), np.log(min(width, height)), size=n_random))
    ratio = np.exp(rng.uniform(-np.log(3), np.log(3), size=n_random))
    extent = np.stack([scale * np.sqrt(ratio), scale / np.sqrt(ratio)], axis=1)
    extent = np.minimum(np.maximum(np.rint(extent), 1), [width, height])
    corner = np.floor(rng.uniform(0, 1, size=(n_random, 2)) * ([width, height] - extent + 1))
    boxes.append(np.concatenate([corner, corner + extent - 1], axis=1))
    boxes = np.concatenate(boxes)
    boxes = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1
    )
    boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][: max(count, n_object)]  # object boxes come first: all kept
    return boxes[rng.permutation(len(boxes))]


def _growth_boxes(obj: GeneratedObject) -> list[tuple[int, int, int, int]]:
    """Boxes that grow from a two-part object's head to the whole object: every edge a third
    and two thirds of the way from the head's box to the object's (about 0.5 and 0.7 of the
    object's area). Selective search proposes such boxes when it merges the head with the
    adjacent body region by region; they chain the part to the whole (head -> first: IoU
    ~0.6, first -> second ~0.7, second -> object ~0.7), the overlaps that OICR's and PCL's
    IoU >= 0.5 positives climb. None for an object with fewer than two visible parts."""
    if len(obj.parts) != 2:
        return []
    head, whole = np.array(obj.parts[1], dtype=float), np.array(obj.box, dtype=float)
    return [tuple(np.rint(head + t * (whole - head)).astype(int).tolist()) for t in GROWTH]


def _image_classes(rng: np.random.Generator, first: int, num_classes: int) -> list[int]:
    """Classes of one image: ``first``, then 0-2 more, each a repeat of ``first`` with p=0.3."""
    extra = int(rng.choice(3, p=[0.45, 0.35, 0.2]))
    return [first] + [
        first if rng.random() < 0.3 else int(rng.integers(num_classes)) for _ in range(extra)
    ]


def _first_classes(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """``n`` classes that run through every class once (in a random order) before repeating."""
    rounds = -(-n // num_classes)
    return np.concatenate([rng.permutation(num_classes) for _ in range(rounds)])[:n]


def _write_annotation(
    path: Path,
    filename: str,
    size: tuple[int, int],
    objects: Sequence[GeneratedObject],
    styles: Sequence[ClassStyle],
    seed: int,
) -> None:
    """Write one VOC2007-structured XML file (1-based pixel coordinates)."""

    def add(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
        node = ET.SubElement(parent, tag)
        if text is not None:
            node.text = str(text)
        return node

    annotation = ET.Element("annotation")
    add(annotation, "folder", "VOC2007")
    add(annotation, "filename", filename)
    source = add(annotation, "source")
    add(source, "database", "wsl generated VOC2007")
    add(source, "annotation", "wsl.data.generate")
    add(source, "image", f"synthetic, seed {seed}")
    size_node = add(annotation, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3), strict=True):
        add(size_node, tag, value)
    add(annotation, "segmented", 0)
    for obj in objects:
        node = add(annotation, "object")
        add(node, "name", styles[obj.class_index].name)
        add(node, "pose", "Unspecified")
        add(node, "truncated", int(obj.truncated))
        add(node, "difficult", int(obj.difficult))
        bndbox = add(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box, strict=True):
            add(bndbox, tag, value + 1)
    tree = ET.ElementTree(annotation)
    ET.indent(tree, "\t")
    tree.write(path)


def _write_image_sets(
    main_dir: Path,
    splits: dict[str, list[str]],
    objects: dict[str, list[GeneratedObject]],
    styles: Sequence[ClassStyle],
) -> None:
    """``<split>.txt`` and VOC's per-class ``<class>_<split>.txt`` (1 / -1 / 0 flags)."""
    main_dir.mkdir(parents=True)
    for split, ids in splits.items():
        (main_dir / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c, style in enumerate(styles):
            lines = []
            for image_id in ids:
                difficult = [o.difficult for o in objects[image_id] if o.class_index == c]
                flag = -1 if not difficult else (0 if all(difficult) else 1)
                lines.append(f"{image_id} {flag:2d}\n")
            (main_dir / f"{style.name}_{split}.txt").write_text("".join(lines))


def _check_options(
    num_classes: int,
    image_size: int,
    num_trainval: int,
    num_test: int,
    difficulty: str,
    proposals_per_image: int,
) -> None:
    class_styles(num_classes)
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if num_trainval < 2 or num_test < 1:
        raise ValueError(
            f"need at least 2 trainval and 1 test image, got {num_trainval} and {num_test}"
        )
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if proposals_per_image < 1:
        raise ValueError(f"proposals_per_image must be positive, got {proposals_per_image}")


def generate_voc(
    root: str | Path,
    *,
    seed: int = 0,
    num_classes: int = 4,
    image_size: int = 128,
    num_trainval: int = 240,
    num_test: int = 160,
    difficulty: str = "easy",
    proposals_per_image: int = 200,
    force: bool = False,
) -> Path:
    """Write the generated data set under ``root``; return its ``VOCdevkit/VOC2007`` folder.

    Ids run ``000001``... through trainval, then test; train and val split trainval in
    halves at random. An existing complete set is left alone unless ``force``, which
    replaces ``VOC2007`` and the two ``.mat`` files. Each image's proposal count is drawn
    in 90-110 % of ``proposals_per_image`` (never fewer than its object boxes).
    """
    _check_options(num_classes, image_size, num_trainval, num_test, difficulty, proposals_per_image)
    root = Path(root)
    voc_dir = root / "VOCdevkit" / "VOC2007"
    if (voc_dir / "ImageSets" / "Main" / "test.txt").is_file() and not force:
        log.info(
            "%s already holds a data set; leaving it (pass force=True / --force to redo)", voc_dir
        )
        return voc_dir
    if voc_dir.exists() and not force:
        raise DataError(
            voc_dir, "exists but has no ImageSets/Main/test.txt; pass --force to replace it"
        )
    styles, look = class_styles(num_classes), LOOKS[difficulty]
    plan = np.random.default_rng([seed, 0])
    in_train = np.zeros(num_trainval, dtype=bool)
    in_train[plan.permutation(num_trainval)[: num_trainval // 2]] = True
    subsets = np.concatenate([np.where(in_train, 0, 1), np.full(num_test, 2)])
    first = np.zeros(len(subsets), dtype=int)
    for subset in range(3):
        members = np.flatnonzero(subsets == subset)
        first[members] = _first_classes(plan, len(members), num_classes)
    ids = [f"{i + 1:06d}" for i in range(len(subsets))]

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".generate-"))
    try:
        work = tmp / "VOC2007"
        (work / "JPEGImages").mkdir(parents=True)
        (work / "Annotations").mkdir()
        objects, proposals = {}, {}
        for i, image_id in enumerate(tqdm(ids, desc="generating", unit="image", disable=None)):
            rng = np.random.default_rng([seed, 1, i])
            width, height = np.rint(image_size * rng.uniform(0.8, 1.0, size=2)).astype(int)
            classes = _image_classes(rng, int(first[i]), num_classes)
            image, objects[image_id] = _draw_image(rng, width, height, classes, styles, look)
            image.save(work / "JPEGImages" / f"{image_id}.jpg", quality=JPEG_QUALITY)
            _write_annotation(
                work / "Annotations" / f"{image_id}.xml",
                f"{image_id}.jpg",
                (width, height),
                objects[image_id],
                styles,
                seed,
            )
            rng = np.random.default_rng([seed, 2, i])
            count = round(proposals_per_image * rng.uniform(0.9, 1.1))
            proposals[image_id] = _proposals(rng, objects[image_id], width, height, count)
        splits = {
            "train": [ids[i] for i in np.flatnonzero(subsets == 0)],
            "val": [ids[i] for i in np.flatnonzero(subsets == 1)],
            "trainval": ids[:num_trainval],
            "test": ids[num_trainval:],
        }
        _write_image_sets(work / "ImageSets" / "Main", splits, objects, styles)
        (work / "classes.txt").write_text("".join(f"{s.name}\n" for s in styles))
        proposal_dir = root / "selective_search_data"
        proposal_dir.mkdir(exist_ok=True)
        for split in ("trainval", "test"):
            write_proposal_mat(
                tmp / f"voc_2007_{split}.mat", splits[split], proposals, _MAT_DESCRIPTION
            )
            os.replace(tmp / f"voc_2007_{split}.mat", proposal_dir / f"voc_2007_{split}.mat")
        if voc_dir.exists():
            shutil.rmtree(voc_dir)
        voc_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, voc_dir)  # last: VOC2007 appears only once complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "wrote %d trainval + %d test images of %d classes (%s) to %s",
        num_trainval,
        num_test,
        num_classes,
        difficulty,
        voc_dir,
    )
    return voc_dir


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m wsl.data.generate --root DIR [options]``."""
    parser = argparse.ArgumentParser(
        prog="python -m wsl.data.generate",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", type=Path, required=True, help="writes ROOT/VOCdevkit/VOC2007")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--num-classes", type=int, default=4, help=f"1..{MAX_CLASSES}")
    parser.add_argument("--image-size", type=int, default=128, help="longest possible side")
    parser.add_argument("--trainval", type=int, default=240, help="number of trainval images")
    parser.add_argument("--test", type=int, default=160, help="number of test images")
    parser.add_argument(
        "--difficulty",
        choices=DIFFICULTIES,
        default="easy",
        help="easy: plain backgrounds; medium: gray clutter; hard: clutter, blobs in class "
        "colours, smaller objects, colour jitter; parts: larger objects of two parts, the class "
        "shape as a head on a body of muted class colour",
    )
    parser.add_argument("--proposals-per-image", type=int, default=200, help="on average")
    parser.add_argument("--force", action="store_true", help="replace an existing data set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_voc(
        args.root,
        seed=args.seed,
        num_classes=args.num_classes,
        image_size=args.image_size,
        num_trainval=args.trainval,
        num_test=args.test,
        difficulty=args.difficulty,
        proposals_per_image=args.proposals_per_image,
        force=args.force,
    )


if __name__ == "__main__":
    main()
