"""A data set's classes in a trained model's output order, matched by name."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from wsl.data.bad_input import DataError
from wsl.data.layouts import build_layout

log = logging.getLogger(__name__)


def match_classes(
    data_cfg: DictConfig, ckpt_path: str | Path, model_classes: Sequence[str]
) -> None:
    """Make ``data_cfg`` label the data in the checkpoint's class order, matching by name.

    The data set's classes (``data.classes``, else the data set's own list:
    :meth:`~wsl.data.layouts.DataLayout.classes`) must be the checkpoint's; listed in another
    order, they are matched by name (with a warning), since labels in the data set's order
    would be permuted against the model's outputs and every metric would be wrong. Other
    classes are a :class:`DataError` naming where the data's classes come from, the missing
    and the unknown ones.
    """
    model_classes = list(model_classes)
    if data_cfg.get("classes"):
        where, data_classes = Path(str(ckpt_path)), list(data_cfg.classes)
        source = "data.classes"
    else:
        layout = build_layout(data_cfg.get("layout"))
        classes, source = layout.classes(data_cfg.root, data_cfg.train_split)
        data_classes = list(classes)
        where = Path(source) if Path(source).is_file() else Path(str(data_cfg.root))
    if set(data_classes) != set(model_classes):
        missing = [c for c in model_classes if c not in data_classes]
        extra = [c for c in data_classes if c not in model_classes]
        raise DataError(
            where,
            f"the data's classes ({source}) are not those of the checkpoint {ckpt_path}: "
            f"missing {missing or 'none'}; not in the checkpoint {extra or 'none'}",
        )
    if data_classes != model_classes:
        log.warning(
            "%s lists the checkpoint's classes in another order; labels are matched to the "
            "model's outputs by name (checkpoint order: %s)",
            source, ", ".join(model_classes),
        )  # fmt: skip
    data_cfg.classes = model_classes
