"""Image-level labels: a vector of C classes per image, derived from its objects.

Two conventions, chosen by ``data.difficult_labels``:

- ``positive`` (default, OICR/PCL practice): a class is positive if the image holds any
  instance of it, difficult ones included.
- ``ignore`` (VOC classification devkit): a class whose only instances are difficult is
  neither positive nor negative; its weight is 0 so losses and metrics skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsl.data.annotations import VOCAnnotation

DIFFICULT_LABEL_CHOICES = ("positive", "ignore")


def image_labels(
    annotation: VOCAnnotation, classes: Sequence[str], difficult_labels: str = "positive"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, weights)``, both float32 ``(C,)``; weight 0 marks an ignored class."""
    if difficult_labels not in DIFFICULT_LABEL_CHOICES:
        raise ValueError(
            f"data.difficult_labels={difficult_labels!r} is not valid; "
            f"choose one of {DIFFICULT_LABEL_CHOICES}"
        )
    index = {name: i for i, name in enumerate(classes)}
    labels = np.zeros(len(classes), dtype=np.float32)
    weights = np.ones(len(classes), dtype=np.float32)
    has_easy = np.zeros(len(classes), dtype=bool)
    for obj in annotation.objects:
        labels[index[obj.name]] = 1.0
        has_easy[index[obj.name]] |= not obj.difficult
    if difficult_labels == "ignore":
        difficult_only = (labels == 1.0) & ~has_easy
        labels[difficult_only] = 0.0
        weights[difficult_only] = 0.0
    return labels, weights
