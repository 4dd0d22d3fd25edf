"""``python -m wsl.predict ckpt_path=... input=IMAGE_OR_FOLDER``: a trained model on any images.

The checkpoint holds its run's config, so the model (Localizer or WSDDN) and the eval transform
are rebuilt as trained. ``input`` is one image or a folder, whose files are taken in name order
(not its subfolders); entries that are not regular files (subfolders, named pipes, sockets,
devices, broken links: never opened, a named pipe would wait forever) or lack an image extension
(:data:`IMAGE_SUFFIXES`) are skipped, each with a warning, then one warning with their count.
Images are read upright: turned as their EXIF orientation says (as phones and photo viewers show
them, :func:`~wsl.data.images.read_upright_rgb`); proposals found on the stored pixels are turned
with them. The Localizer reads boxes off the heatmaps of its predicted classes (image score
>= ``class_threshold``, or the best class when none is); WSDDN scores the proposals of the
method ``proposals._target_`` names (default: selective search computed for the images, cached
under ``proposals.cache_dir``), filtered as in its run.

Images whose longer side is above ``max_size`` are downscaled to it first (read, predicted and
drawn at that size, which keeps a 9000x9000 photo to seconds and its pictures small); boxes are
still reported in pixels of the full-size image.

Written to ``output_dir`` (default: the run directory), which may not be the folder the images
are read from (a picture could replace an input image; refused with :class:`OutputDirError`):

- ``<stem>.png``: the image with its boxes (class name and score); for the Localizer also
  ``<stem>_<class>.png``, the heatmap of each predicted class with that class's boxes. Images
  sharing a stem (``photo.jpg``, ``photo.png``) use their whole name (``photo.jpg.png``);
- ``detections.json``: ``{"checkpoint", "images": {file name: {"width", "height",
  "detections": [{"class", "score", "box": [x1, y1, x2, y2]}], "class_scores" (Localizer),
  "pictures"}}, "skipped": {file name: why}, "failed": {file name: problem}}``; width, height
  and boxes are those of the upright image at full size, boxes in 0-based inclusive pixels
  (rounded to 0.01: WSDDN's are proposals scaled to the network input and back), best first,
  scoring at least ``score_threshold``, at most ``max_boxes`` per image; scores at full
  precision.

An image that cannot be decoded, or that the model's eval transform would shrink below what its
network takes (a very elongated one), is reported (one line naming the file and the problem) and
listed under ``failed``; the other images are still predicted and everything is written, then
the command exits with status 1. It exits with 0 when every image was predicted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import Tensor

from wsl.data.bad_input import DataError
from wsl.data.images import file_kind, read_upright_tensor
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.transforms import build_transform
from wsl.data.voc import ProposalProvider
from wsl.detector import (
    check_network_input,
    load_model,
    model_predictor,
    resolve_device,
)
from wsl.drawing import PALETTE, draw_boxes, overlay_heatmap, save_png
from wsl.runtime.atomic import atomic_path
from wsl.runtime.console import quiet_console
from wsl.runtime.run_dir import RunDirError, ensure_writable
from wsl.runtime.run_failure import reported_run
from wsl.runtime.settings import check_groups
from wsl.structures.boxes import boxes_to_original, upright_boxes
from wsl.structures.detections import Detections
from wsl.structures.evidence import ClassEvidence
from wsl.structures.proposals import Proposals
from wsl.training.module import WSLModule

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # compared case-insensitively
DETECTIONS_FILE = "detections.json"
# The config groups of conf/predict.yaml; the model and its transform come from the checkpoint.
CONFIG_GROUPS = ("paths",)


class OutputDirError(RunDirError):
    """``output_dir`` cannot take the pictures (it is the folder the images are read from)."""


def check_output_dir(output_dir: Path, input_path: Path) -> None:
    """Refuse an ``output_dir`` that is the folder the input images are in: a picture
    ``<stem>.png`` would replace an input image of that name."""
    source = input_path if input_path.is_dir() else input_path.parent
    if output_dir.is_dir() and output_dir.samefile(source):
        raise OutputDirError(
            f"output_dir={output_dir} is the folder the images are read from; the pictures "
            "would replace input images of the same name: choose another output_dir"
        )


def picture_stems(images: list[Path]) -> dict[Path, str]:
    """The name each image's pictures start with: its stem, or its whole file name when
    another image shares the stem (``photo.jpg`` and ``photo.png``: ``photo.jpg.png`` and
    ``photo.png.png``, not ``photo.png`` twice)."""
    counts = Counter(path.stem.lower() for path in images)
    return {path: path.name if counts[path.stem.lower()] > 1 else path.stem for path in images}


def find_images(path: Path) -> tuple[list[Path], dict[str, str]]:
    """The image files at ``path`` (a file, or a folder's files in name order) and the entries
    skipped (name -> why). Only regular files are taken; nothing is opened here."""
    if path.is_dir():
        entries = sorted(path.iterdir())
    elif not os.path.lexists(path):
        raise DataError(path, "no such file or folder (input=...)")
    elif (kind := file_kind(path)) is not None:
        raise DataError(path, f"{kind}, not an image file or a folder (input=...)")
    else:
        entries = [path]
    images, skipped = [], {}
    for entry in entries:
        if entry.is_dir():
            skipped[entry.name] = "a folder (subfolders are not searched)"
        elif (kind := file_kind(entry)) is not None:
            skipped[entry.name] = f"{kind}, not a regular file (never opened)"
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped[entry.name] = f"not an image file (extension not in {' '.join(IMAGE_SUFFIXES)})"
        else:
            images.append(entry)
    return images, skipped


def search_proposals(
    provider: ProposalProvider, paths: list[Path]
) -> tuple[dict[Path, Proposals], dict[Path, DataError]]:
    """Proposals of every image the provider serves, and the error of each one it does not.

    An image's id is the name its pictures start with (its stem, for a ``.mat`` file the VOC
    image id). After a failure the remaining images are asked again; with selective search,
    those already done come from the cache (with ``cache_dir`` set).
    """
    ids = picture_stems(paths)
    found: dict[Path, Proposals] = {}
    errors: dict[Path, DataError] = {}
    todo = list(paths)
    while todo:
        try:
            by_id = provider.load([ids[path] for path in todo], todo)
            found.update((path, by_id[ids[path]]) for path in todo)
            todo = []
        except DataError as error:
            if error.path not in todo:  # the provider's own problem (its file), not an image's
                raise
            errors[error.path] = error
            todo = [path for path in todo if path != error.path]
    return found, errors


def _file_name(text: str) -> str:
    """``text`` with every character that is unsafe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... when taken; the result is added to ``taken``."""
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}-{n}"
    taken.add(unique)
    return unique


def pictures(
    image: Tensor, found: Detections, evidence: ClassEvidence | None, class_names: list[str]
) -> dict[str, Tensor]:
    """``""``: the image with every box; for each predicted class with a heatmap, its name: the
    heatmap over the image with that class's boxes."""

    def drawn(base: Tensor, keep: Tensor) -> Tensor:
        shown = found.subset(keep)
        labels = [
            f"{name} {s:.3g}"
            for name, s in zip(shown.labels(class_names), shown.scores.tolist(), strict=True)
        ]
        colours = [PALETTE[c % len(PALETTE)] for c in shown.classes.tolist()]
        return draw_boxes(base, shown.boxes, labels=labels, colors=colours)

    result = {"": drawn(image, torch.ones_like(found.scores, dtype=torch.bool))}
    if evidence is not None:
        for c in evidence.predicted:
            overlay = overlay_heatmap(image, evidence.heatmaps[c], min_side=1)
            result[class_names[c]] = drawn(overlay, found.classes == c)
    return result


def describe(
    found: Detections, evidence: ClassEvidence | None, class_names: list[str]
) -> dict[str, Any]:
    """The ``detections`` (and ``class_scores``) entries of one image in ``detections.json``."""
    columns = (found.boxes.tolist(), found.scores.tolist(), found.labels(class_names))
    entry: dict[str, Any] = {
        "detections": [
            {"class": name, "score": s, "box": [round(x, 2) for x in box]}
            for box, s, name in zip(*columns, strict=True)
        ]
    }
    if evidence is not None:
        entry["class_scores"] = dict(zip(class_names, evidence.class_scores.tolist(), strict=True))
    return entry


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image of ``cfg.input``, write the pictures and ``detections.json`` to
    ``cfg.output_dir``; return what ``detections.json`` holds."""
    images, skipped = find_images(Path(cfg.input))
    check_output_dir(Path(cfg.output_dir), Path(cfg.input))
    output_dir = ensure_writable(cfg.output_dir)
    for name, why in skipped.items():
        log.warning("skipped %s: %s", name, why)
    if skipped:
        log.warning(
            "skipped %d of %d entries of %s (listed under 'skipped' in %s)",
            len(skipped), len(skipped) + len(images), cfg.input, DETECTIONS_FILE,
        )  # fmt: skip
    if not images:
        raise DataError(cfg.input, f"no image files ({' '.join(IMAGE_SUFFIXES)})")
    module, run_cfg = load_model(cfg.ckpt_path, resolve_device(cfg.device))
    class_names = list(module.class_names)
    transform = build_transform(**run_cfg.data.eval_transform)
    errors: dict[Path, DataError] = {}
    if not isinstance(module, WSLModule):
        raise TypeError(f"{cfg.ckpt_path}: cannot predict with a {type(module).__name__}")
    proposals, proposal_filter = None, None
    if module.needs_proposals:
        proposals, errors = search_proposals(hydra.utils.instantiate(cfg.proposals), images)
        # the checkpoint's run's, with the non-null proposal_filter.* of this command
        proposal_filter = ProposalFilter.of(
            run_cfg.data.get("proposal_filter"), cfg.proposal_filter
        )
    predictor = model_predictor(module, transform, cfg.class_threshold, proposals, proposal_filter)
    threshold = cfg.score_threshold
    if threshold is None:  # the family's
        threshold = module.default_score_threshold
    results: dict[str, Any] = {}
    stems = picture_stems(images)
    taken: set[str] = set()
    with torch.no_grad():
        for path in images:
            try:
                if path in errors:  # its proposals could not be computed
                    raise errors[path]
                image, on_disk, orientation = read_upright_tensor(path, cfg.max_size)
                check_network_input(transform, module, (image.shape[1], image.shape[2]), path)
                if proposals is not None and orientation != 1:  # found on the stored pixels
                    stored = on_disk if orientation < 5 else on_disk[::-1]  # (height, width)
                    searched = proposals[path]
                    turned = upright_boxes(searched.boxes, orientation, stored[1], stored[0])
                    proposals[path] = Proposals(turned, searched.scores)  # what predictor reads
                found, evidence = predictor(path, image, on_disk)
                found = found.top(threshold, cfg.max_boxes)
            except DataError as error:
                errors[path] = error
                log.error("failed %s", error)
                continue
            size = (image.shape[1], image.shape[2])
            if size != on_disk:
                log.info(
                    "%s: %dx%d pixels, predicted and drawn at %dx%d (max_size=%d); boxes are "
                    "in pixels of the full-size image",
                    path.name, on_disk[1], on_disk[0], size[1], size[0], cfg.max_size,
                )  # fmt: skip
            on_disk_boxes = boxes_to_original(found.boxes, size, on_disk)
            entry = {"width": on_disk[1], "height": on_disk[0]}
            entry.update(describe(found._replace(boxes=on_disk_boxes), evidence, class_names))
            entry["pictures"] = []
            for name, picture in pictures(image, found, evidence, class_names).items():
                stem = _file_name("_".join(filter(None, (stems[path], name))))
                file = save_png(picture, output_dir / f"{_unique(stem, taken)}.png")
                entry["pictures"].append(file.name)
            results[path.name] = entry
            best = entry["detections"][:1]
            print(
                f"{path.name}: {len(entry['detections'])} boxes"
                + "".join(f", best {d['class']} {d['score']:.3g}" for d in best)
            )
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "images": results,
        "skipped": skipped,
        "failed": {path.name: error.problem for path, error in errors.items()},
    }
    with atomic_path(output_dir / DETECTIONS_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.predict``; exits with 1 when an image failed."""
    quiet_console()
    with reported_run(cfg.output_dir):
        check_groups(
            "wsl.predict", HydraConfig.get().runtime.choices, CONFIG_GROUPS,
            "the model, its classes and its eval transform come from the checkpoint (ckpt_path)",
        )  # fmt: skip
        summary = predict(cfg)
    print(
        f"predicted {len(summary['images'])} images, skipped {len(summary['skipped'])} files, "
        f"{len(summary['failed'])} failed; wrote {Path(cfg.output_dir) / DETECTIONS_FILE}"
    )
    if summary["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
