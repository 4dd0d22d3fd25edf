"""Image-level labels: a vector of C classes per image, derived from its objects.

From the objects of an annotation (:func:`image_labels`) or from the flags of VOC's
classification layout (:func:`flag_labels`: ``0`` marks a class with only difficult
instances). Three conventions, chosen by ``data.difficult_labels``:

- ``positive`` (default): a class is positive if the image holds any instance of it,
  difficult ones included.
- ``ignore`` (VOC classification devkit; WSDDN's released code): a class whose only instances
  are difficult is neither positive nor negative; its weight is 0 so losses and metrics skip
  it.
- ``negative`` (OICR's and PCL's code): difficult objects are dropped before the labels are
  made, so a class whose only instances are difficult is negative (label 0, weight 1): Caffe
  OICR ``lib/datasets/pascal_voc.py`` lines 167-174 with ``use_diff: False`` (line 50), as
  PCL's Caffe branch (``pcl``, the same lines); pcl.pytorch 0.4.0
  ``lib/datasets/json_dataset.py`` lines 194-195 drops the objects its COCO-format VOC
  annotation files mark ``ignore`` (files not in the repository).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsl.data.annotations import ImageAnnotation

DIFFICULT_LABEL_CHOICES = ("positive", "ignore", "negative")


def check_difficult_labels(difficult_labels: str) -> None:
    """Raise unless ``data.difficult_labels`` is one of :data:`DIFFICULT_LABEL_CHOICES`."""
    if difficult_labels not in DIFFICULT_LABEL_CHOICES:
        raise ValueError(
            f"data.difficult_labels={difficult_labels!r} is not valid; "
            f"choose one of {DIFFICULT_LABEL_CHOICES}"
        )


def image_labels(
    annotation: ImageAnnotation, classes: Sequence[str], difficult_labels: str = "positive"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, weights)``, both float32 ``(C,)``; weight 0 marks an ignored class."""
    check_difficult_labels(difficult_labels)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.zeros(len(classes), dtype=np.float32)
    weights = np.ones(len(classes), dtype=np.float32)
    has_easy = np.zeros(len(classes), dtype=bool)
    for obj in annotation.objects:
        labels[index[obj.name]] = 1.0
        has_easy[index[obj.name]] |= not obj.difficult
    difficult_only = (labels == 1.0) & ~has_easy
    if difficult_labels != "positive":
        labels[difficult_only] = 0.0
    if difficult_labels == "ignore":
        weights[difficult_only] = 0.0
    return labels, weights


def flag_labels(
    flags: np.ndarray, difficult_labels: str = "positive"
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, weights)`` from one image's classification flags (``1``, ``-1``, ``0``: only
    difficult instances), under the same convention as :func:`image_labels`."""
    check_difficult_labels(difficult_labels)
    difficult_only = flags == 0
    labels = ((flags == 1) | (difficult_only & (difficult_labels == "positive"))).astype(np.float32)
    weights = np.where(difficult_only & (difficult_labels == "ignore"), 0.0, 1.0).astype(np.float32)
    return labels, weights
