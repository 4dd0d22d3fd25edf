"""How a data set is laid out on disk: ``data.layout`` (``conf/data/layout/``).

- ``voc``: a PASCAL VOC devkit folder (:class:`~wsl.data.voc.VOCLayout`);
- ``coco``: COCO's own layout (:class:`~wsl.data.coco.COCOLayout`);
- ``image_tags``: images and a ``labels.csv`` of their tags
  (:class:`~wsl.data.image_tags.ImageTagsLayout`).

A layout holds its own options and reads a split into a
:class:`~wsl.data.split_index.SplitIndex` from the arguments every layout shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import hydra

from wsl.data.split_index import SplitIndex
from wsl.data.voc import VOCLayout


class DataLayout(Protocol):
    """A data set layout (a ``_target_`` of ``conf/data/layout/``)."""

    def split_name(self, split: str) -> str:
        """The layout's name of a configured split (COCO maps VOC's names to its files')."""
        ...

    def index(self, root: str | Path, split: str, **settings: Any) -> SplitIndex:
        """Read and check ``split``; ``settings`` are ``classes``, ``difficult_labels``,
        ``proposals``, ``proposal_filter``, ``on_error`` and ``verify_images``."""
        ...

    def classes(self, root: str | Path, split: str) -> tuple[tuple[str, ...], str]:
        """The data set's own class list (COCO: training split ``split``'s) and where it
        comes from, as a phrase for messages."""
        ...


def build_layout(config: DataLayout | Mapping[str, Any] | None) -> DataLayout:
    """The layout of ``data.layout``: built from its ``_target_`` config, as given when already
    built, VOC's when absent (configs stored before layouts existed)."""
    if config is None:
        return VOCLayout()
    if isinstance(config, Mapping) or hasattr(config, "keys"):
        return hydra.utils.instantiate(config, _convert_="all")
    if not callable(getattr(config, "index", None)):
        raise TypeError(
            f"data.layout must be a layout built from a _target_ (data/layout=voc|coco|"
            f"image_tags, conf/data/layout/), got {config!r}"
        )
    return config
