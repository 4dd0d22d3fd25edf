"""A split's object boxes as a COCO-format ground truth, for COCO's metrics of any data set."""

from __future__ import annotations

from typing import Any

from wsl.data.split_index import SplitIndex
from wsl.structures.boxes import coco_bbox


def coco_ground_truth(index: SplitIndex) -> dict[str, Any]:
    """The images, objects and classes of ``index`` as a COCO dataset dict (``images``,
    ``annotations``, ``categories``), ids from :meth:`~SplitIndex.coco_image_ids` and
    :attr:`~SplitIndex.category_ids`.

    Boxes are ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` of the inclusive boxes, areas COCO's own
    where the data set gives them (COCO data) and the box's otherwise. Objects ignored in
    evaluation (VOC's difficult, COCO's crowd) are ``iscrowd: 1``, COCO's one way to ignore a
    ground truth: for COCO data exactly its crowd regions; for VOC data a detection on a
    difficult object is then ignored by COCO's crowd rule (intersection over the detection's
    area), where the VOC devkit uses IoU.
    """
    image_ids = index.coco_image_ids()
    category_of = dict(zip(index.classes, index.category_ids, strict=True))
    images, annotations = [], []
    for record in index.records:
        annotation = record.annotation
        image_id = image_ids[record.image_id]
        images.append(
            {
                "id": image_id,
                "file_name": annotation.filename,
                "width": annotation.width,
                "height": annotation.height,
            }
        )
        for obj, bbox in zip(annotation.objects, coco_bbox(annotation.boxes()), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval cannot match an annotation of id 0
                    "image_id": image_id,
                    "category_id": category_of[obj.name],
                    "bbox": bbox.tolist(),
                    "area": float(bbox[2] * bbox[3]) if obj.area is None else obj.area,
                    "iscrowd": int(obj.difficult),
                }
            )
    categories = [{"id": i, "name": name} for name, i in category_of.items()]
    return {"images": images, "annotations": annotations, "categories": categories}
