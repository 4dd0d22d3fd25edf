"""``last.ckpt``: the newest state of a run, written atomically every N steps, at each epoch
end and when the run is stopped by SIGTERM, so a run killed at any moment (even ``kill -9``)
resumes from it; what such a kill left half-written is removed at the next start."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from wsl.checkpoint import remove_stale_partials

log = logging.getLogger(__name__)


class LastCheckpoint(pl.Callback):
    """Save ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` steps, at epoch ends and on
    SIGTERM while fitting (Lightning stops the loop between steps: the state saved is that of
    the last finished step, and resuming continues from it).

    The checkpoint is written to a temporary file beside it and renamed into place, so
    ``last.ckpt`` is always complete. Resume with ``ckpt_path=<dirpath>/last.ckpt``. At the
    start of fitting, partial checkpoints an interrupted save left (``.*.ckpt*.partial``) in
    ``dirpath`` and beside the checkpoint resumed from are deleted.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 500) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps={every_n_train_steps} must be at least 1")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps

    def save(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` now (every rank takes part; rank 0 writes)."""
        partial = self.path.with_name(f".{self.path.name}.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # full state: resumable
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("last_checkpoint")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            remove_stale_partials(self.path.parent)
            if trainer.ckpt_path:
                remove_stale_partials(Path(trainer.ckpt_path).parent)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step % self.every_n_train_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            self.save(trainer)
            if trainer.is_global_zero:
                log.warning("SIGTERM: saved %s at step %d", self.path, trainer.global_step)
