"""Send one picture to every configured logger that can show pictures."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from wsl.loggers.visdom_logger import VisdomLogger


def log_image(loggers: Iterable[Logger], tag: str, image: torch.Tensor, step: int = 0) -> None:
    """Log a ``uint8`` ``3xHxW`` image under ``tag`` to TensorBoard and visdom loggers."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
        elif isinstance(logger, VisdomLogger):
            logger.log_image(tag, image, step=step)
