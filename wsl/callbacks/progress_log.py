"""Progress as log lines: every N optimizer steps and at each epoch end, with an ETA.

Lightning's progress bar only helps on a terminal; piped output (``make demo | tee``, a SLURM
``.out`` file) shows nothing until the end. These lines go through Python logging, so Hydra
sends them to the console and to ``<task>.log`` whether or not a terminal is attached.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name value`` pairs of the scalar ``metrics``, sorted by name, 4 significant digits."""
    parts = []
    for name, value in sorted(metrics.items()):
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        parts.append(f"{name} {value:.4g}")
    return " · ".join(parts)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds)."""
    return str(timedelta(seconds=round(seconds)))


class ProgressLog(pl.Callback):
    """Log ``epoch e/E step s/S``, the elapsed time, an ETA, the losses and metrics.

    A line every ``every_n_steps`` optimizer steps (the step values of the training
    metrics logged with ``on_step``: ``train/loss`` for ``train/loss_step``) and one at the end
    of each training epoch, after its validation (the epoch values: training losses and
    metrics as averaged over the epoch, the validation losses and metrics, learning rates).
    The ETA assumes the remaining steps take as long as the ones done so far (validation
    included). Only global rank 0 logs.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps} must be at least 1")
        self.every_n_steps = every_n_steps
        self._start_time = 0.0
        self._start_step = 0
        self._last_step = -1  # the step last logged (gradient accumulation: once per step)
        self._epoch_position: str | None = None  # the ended epoch whose line is due

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_time = time.monotonic()
        self._start_step = trainer.global_step

    def _position(self, trainer: pl.Trainer) -> str:
        """``epoch e/E step s/S · elapsed · ETA`` (E and S when they are bounded)."""
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        total = trainer.estimated_stepping_batches
        steps = f"/{total}" if math.isfinite(total) else ""
        text = f"epoch {trainer.current_epoch + 1}{epochs} step {trainer.global_step}{steps}"
        elapsed = time.monotonic() - self._start_time
        done = trainer.global_step - self._start_step
        text += f" · {format_duration(elapsed)} elapsed"
        if done > 0 and math.isfinite(total):
            remaining = max(total - trainer.global_step, 0) * elapsed / done
            text += f" · ETA {format_duration(remaining)}"
        return text

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == 0 or step % self.every_n_steps:
            return
        if step == self._last_step:
            return
        self._last_step = step
        metrics = {
            name.removesuffix("_step"): value
            for name, value in trainer.callback_metrics.items()
            if name.startswith("train/") and name.endswith("_step")
        }
        log.info("%s | %s", self._position(trainer), format_metrics(metrics))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs this before the module's own on_train_epoch_end, which logs the
        # epoch's training metrics: the line is written when the next epoch starts or
        # training ends.
        if trainer.is_global_zero:
            self._epoch_position = self._position(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_epoch(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_epoch(trainer)

    def _log_epoch(self, trainer: pl.Trainer) -> None:
        """The line of the epoch that just ended, if not written yet."""
        if self._epoch_position is None:
            return
        metrics = {  # "x_epoch" replaces "x" (the last step's value of an on_step metric)
            name.removesuffix("_epoch"): value
            for name, value in sorted(
                trainer.callback_metrics.items(), key=lambda item: item[0].endswith("_epoch")
            )
            if not name.endswith("_step")
        }
        log.info("%s | end of epoch | %s", self._epoch_position, format_metrics(metrics))
        self._epoch_position = None
