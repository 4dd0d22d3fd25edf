"""Which of an image's proposals a model sees: checked against the image, then the useful ones
(:class:`ProposalFilter`, ``data.proposal_filter``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsl.data.bad_input import DataError
from wsl.structures.proposals import Proposals, inside_image


@dataclass(frozen=True)
class ProposalFilter:
    """Checks proposals against their image and keeps the useful ones.

    Args:
        min_size: drop proposals narrower or shorter than this many pixels.
        remove_duplicates: drop exact repeats of a box, keeping the first.
        max_per_image: keep the top k (by score when there are scores, else file order);
            ``None`` keeps all.
        dedup_scale: also keep, of the proposals of a *training* image whose coordinates
            times this round to the same integers on the resized (and flipped) network input,
            only the first, as OICR's and PCL's code (``DEDUP_BOXES`` 1/8: boxes that fall on
            the same cells of the stride-8 map; ppengtang/oicr ``lib/fast_rcnn/config.py``
            line 89, pcl.pytorch 0.4.0 ``lib/core/config.py`` line 411). It depends on the
            drawn scale, so it runs after the train transform
            (:func:`~wsl.structures.boxes.unique_at_scale`); evaluation keeps every proposal
            (the authors score the deduplicated boxes and copy the scores back to all, which
            changes no refinement stream's per-region score). ``None``: off.
    """

    min_size: int = 20
    remove_duplicates: bool = True
    max_per_image: int | None = 2000
    dedup_scale: float | None = None

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ValueError(f"proposal_filter.min_size={self.min_size} must be >= 0")
        if self.dedup_scale is not None and not self.dedup_scale > 0:
            raise ValueError(
                f"proposal_filter.dedup_scale={self.dedup_scale} must be positive or null"
            )
        if self.max_per_image is not None and self.max_per_image < 1:
            raise ValueError(
                f"proposal_filter.max_per_image={self.max_per_image} must be >= 1 or null"
            )

    @classmethod
    def of(
        cls, settings: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None
    ) -> ProposalFilter:
        """The filter of ``settings`` (a ``data.proposal_filter`` config, its keyword arguments;
        ``None``: the defaults) with the non-null ``overrides`` (``wsl.predict``'s
        ``proposal_filter.*``): how the datamodule, ``wsl.predict`` and ``Detector`` build it,
        the last two from the checkpoint's run config."""
        values = dict(settings or {})
        values.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return cls(**values)

    def apply(self, proposals: Proposals, width: int, height: int, source: str) -> Proposals:
        """Filtered proposals of a ``width`` x ``height`` image, best first when scored.

        ``source`` names where the proposals came from in error messages.
        """
        boxes, scores = proposals.boxes, proposals.scores
        if scores is not None and not np.isfinite(scores).all():
            bad = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise DataError(
                source,
                f"boxScores of proposal {bad} is {scores[bad]}, not a finite number; the "
                "scores rank the proposals and weight their features (use_proposal_scores)",
            )
        inside = inside_image(boxes, width, height)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise DataError(
                source,
                f"proposal {bad} (x1, y1, x2, y2) = {boxes[bad].tolist()} (0-based) is not inside "
                f"the {width}x{height} image; check the box_layout and that the file was made "
                "for these images",
            )
        if len(proposals) == 0:
            raise DataError(source, "the image has no proposals at all")
        x1, y1, x2, y2 = boxes.T
        big = (x2 - x1 + 1 >= self.min_size) & (y2 - y1 + 1 >= self.min_size)
        if not big.any():
            raise DataError(
                source,
                f"all {len(proposals)} proposals are narrower or shorter than "
                f"min_size={self.min_size} pixels; lower proposal_filter.min_size",
            )
        proposals = proposals.select(big)
        if self.remove_duplicates:
            _, first = np.unique(proposals.boxes, axis=0, return_index=True)
            proposals = proposals.select(np.sort(first))
        if proposals.scores is not None:
            proposals = proposals.select(np.argsort(-proposals.scores, kind="stable"))
        return proposals.select(slice(self.max_per_image))
