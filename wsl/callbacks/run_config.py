"""Keep the run's composed config inside every checkpoint, so a checkpoint alone is enough
to rebuild its data and model (``python -m wsl.evaluate ckpt_path=...``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from wsl.runtime.stored_config import CHECKPOINT_KEY


class RunConfigInCheckpoint(pl.Callback):
    """Store ``config`` (plain, resolved) under ``checkpoint["wsl_config"]``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.config
