"""Send one picture, or one bar chart, to every configured logger that can show it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from wsl.loggers.visdom_logger import VisdomLogger


def log_image(loggers: Iterable[Logger], tag: str, image: torch.Tensor, step: int = 0) -> None:
    """Log a ``uint8`` ``3xHxW`` image under ``tag`` to TensorBoard and visdom loggers."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
        elif isinstance(logger, VisdomLogger):
            logger.log_image(tag, image, step=step)


def _bar_figure(title: str, values: Sequence[float], labels: Sequence[str]) -> Figure:
    """A bar chart with one labelled bar per value (e.g. class-wise AP), values printed on top."""
    figure = Figure(figsize=(max(4.0, 0.45 * len(values) + 1.5), 3.5), layout="constrained")
    axes = figure.add_subplot()
    bars = axes.bar(range(len(values)), values, color="#4363d8")
    axes.bar_label(bars, fmt="%.3g", fontsize=7)
    axes.set_xticks(range(len(values)), labels, rotation=45, ha="right")
    axes.set_ylim(0, 1.1 * max([1.0, *values]))
    axes.set_title(title)
    return figure


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
            logger.experiment.add_figure(tag, _bar_figure(tag, values, labels), global_step=step)
            for label, value in zip(labels, values, strict=True):
                logger.experiment.add_scalar(f"{tag}/{label}", value, global_step=step)
        elif isinstance(logger, VisdomLogger):
            logger.log_bar(tag, values, labels)
