"""Send one picture, or one bar chart, to every configured logger that can show it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from wsl.loggers.visdom_logger import VisdomLogger
from wsl.reporting.figures import bar_chart


def log_image(loggers: Iterable[Logger], tag: str, image: torch.Tensor, step: int = 0) -> None:
    """Log a ``uint8`` ``3xHxW`` image under ``tag`` to TensorBoard and visdom loggers."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
        elif isinstance(logger, VisdomLogger):
            logger.log_image(tag, image, step=step)


def log_bar(
    loggers: Iterable[Logger],
    tag: str,
    values: Sequence[float],
    labels: Sequence[str],
    step: int = 0,
) -> None:
    """Log one value per label under ``tag``: to TensorBoard as a bar chart (a figure) and each
    value as the scalar ``<tag>/<label>``; to visdom as a bar window."""
    values = [float(v) for v in values]
    if len(values) != len(labels):
        raise ValueError(f"log_bar({tag!r}): {len(values)} values but {len(labels)} labels")
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(
                tag, bar_chart({tag: dict(zip(labels, values, strict=True))}, tag), global_step=step
            )
            for label, value in zip(labels, values, strict=True):
                logger.experiment.add_scalar(f"{tag}/{label}", value, global_step=step)
        elif isinstance(logger, VisdomLogger):
            logger.log_bar(tag, values, labels)
