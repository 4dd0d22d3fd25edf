"""The generated data set's annotations as VOC2007 files: one XML file per image
(``Annotations/``) and the ``ImageSets/Main`` lists, with VOC's per-class flags."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from wsl.data.generated_images import ClassStyle, GeneratedObject


def write_annotation(
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


def write_image_sets(
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
