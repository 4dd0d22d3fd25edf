"""A small synthetic data set in PASCAL VOC2007 layout, identical byte for byte per seed.

``python -m wsl.data.generate --root DIR`` (or :func:`generate_voc`) writes::

    DIR/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}/..., classes.txt
    DIR/selective_search_data/voc_2007_{trainval,test}.mat

and with ``--coco COCO_DIR`` the same images, boxes and proposals in COCO's layout
(:func:`~wsl.data.coco_writer.write_generated_coco`).

Images are slightly non-square (each side 80-100% of ``image_size``) and hold 1-3 objects; an
image's first object cycles through the classes so every class appears, non-difficult, in
train, val and test alike. Some images hold two well separated instances of one class.
``difficulty`` chooses the look. The parts:

- the classes, the looks and the drawing of an image with its exact boxes (``truncated``,
  ``difficult``): :mod:`wsl.data.generated_images`;
- the **synthetic** proposals, drawn to mimic selective search's recall (growth boxes from a
  head to its whole object on the ``parts`` look): :mod:`wsl.data.generated_proposals`, in
  the Fast R-CNN ``.mat`` format (:func:`~wsl.data.proposal_mat.write_proposal_mat`);
- the annotation XML files and ``ImageSets/Main`` lists: :mod:`wsl.data.generated_annotations`.

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsl.data.bad_input import DataError
from wsl.data.coco_writer import write_generated_coco
from wsl.data.generated_annotations import write_annotation, write_image_sets
from wsl.data.generated_images import DIFFICULTIES, LOOKS, MAX_CLASSES, class_styles, draw_image
from wsl.data.generated_proposals import synthetic_proposals
from wsl.data.proposal_mat import write_proposal_mat

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by wsl.data.generate"


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


def _check_options(
    num_classes: int,
    image_size: int,
    num_trainval: int,
    num_test: int,
    difficulty: str,
    proposals_per_image: int,
) -> None:
    """Raise :class:`ValueError` for an option of :func:`generate_voc` out of its range."""
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
            image, objects[image_id] = draw_image(rng, width, height, classes, styles, look)
            image.save(work / "JPEGImages" / f"{image_id}.jpg", quality=JPEG_QUALITY)
            write_annotation(
                work / "Annotations" / f"{image_id}.xml",
                f"{image_id}.jpg",
                (width, height),
                objects[image_id],
                styles,
                seed,
            )
            rng = np.random.default_rng([seed, 2, i])
            count = round(proposals_per_image * rng.uniform(0.9, 1.1))
            proposals[image_id] = synthetic_proposals(rng, objects[image_id], width, height, count)
        splits = {
            "train": [ids[i] for i in np.flatnonzero(subsets == 0)],
            "val": [ids[i] for i in np.flatnonzero(subsets == 1)],
            "trainval": ids[:num_trainval],
            "test": ids[num_trainval:],
        }
        write_image_sets(work / "ImageSets" / "Main", splits, objects, styles)
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
    parser.add_argument(
        "--coco", type=Path, default=None, metavar="DIR",
        help="also write the data set in COCO's layout to DIR (data=coco data.root=DIR)",
    )  # fmt: skip
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
    if args.coco is not None:
        write_generated_coco(args.root, args.coco)


if __name__ == "__main__":
    main()
