"""Object-centric crops of the generated classes: the images of a fully supervised stand-in
for ImageNet (:mod:`wsl.benchmarks.crop_backbone`).

Each crop holds one whole object of one class, centred (up to a small shift) and filling 55-90 %
of the crop's side, drawn as :mod:`wsl.data.generated_images` draws it for a look (``parts``:
the class shape as a head on a muted body) on that look's background, with its colour jitter
and pixel noise. Classes cycle (crop ``i`` is class ``i mod C``), so every class has the same count.

Crop ``i`` of ``seed`` draws from the random stream ``[seed, CROP_STREAM, i]``, a stream that
:func:`~wsl.data.generate.generate_voc` never uses (it draws from ``[seed, 0]``,
``[seed, 1, i]`` and ``[seed, 2, i]``): crops are never copies of a generated data set's images,
for any seed of either.
"""

from __future__ import annotations

import numpy as np

from wsl.data.generated_images import (
    LOOKS,
    add_noise,
    background,
    class_styles,
    half_extents,
    paint_object,
)

CROP_STREAM = 3  # the second entry of every crop's seed sequence (generate_voc uses 0, 1 and 2)
OBJECT_FRACTION = (0.55, 0.9)  # the object's side over the crop's side
MAX_SHIFT = 0.05  # the object's centre moves at most this fraction of the side off the middle


def render_crops(
    indices: range, *, seed: int, num_classes: int, difficulty: str, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crops number ``indices`` of ``seed``: ``(N, size, size, 3)`` uint8 RGB images and their
    ``(N,)`` class indices (``i mod num_classes``, in
    :func:`~wsl.data.generated_images.class_styles` order)."""
    styles, look = class_styles(num_classes), LOOKS[difficulty]
    images = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    labels = np.array([i % num_classes for i in indices], dtype=np.int64)
    for n, i in enumerate(indices):
        rng = np.random.default_rng([seed, CROP_STREAM, i])
        image = background(rng, size, size, look)
        style = styles[labels[n]]
        half = half_extents(rng, style.shape, rng.uniform(*OBJECT_FRACTION) * size)
        half = np.minimum(half, size / 2 - 1)  # a long bar stays inside the crop
        centre = size / 2 + rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
        paint_object(image, rng, int(labels[n]), style, centre, half, look)
        images[n] = np.asarray(add_noise(image, rng, look))
    return images, labels
