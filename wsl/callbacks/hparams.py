"""The run's hyperparameters with its final test metrics, for TensorBoard's HParams tab.

``wsl.train`` logs the composed config when the run starts; the TensorBoard logger keeps it
(``default_hp_metric: false`` in ``conf/logger/tensorboard.yaml``, so no placeholder
``hp_metric = -1`` is written). When a test ends, this callback logs those hyperparameters
again with the test's metrics (``test/mAP``, ...) at the step the test logged them, so the
HParams tab lists one row per run with its settings and final numbers, and compares runs.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

PREFIX = "test/"


class HParamsWithTestMetrics(pl.Callback):
    """On ``on_test_end``, ``log_hyperparams(hparams, test metrics)`` on each TensorBoard logger.

    The test metrics are the ``test/...`` entries of ``trainer.callback_metrics``; with none
    (a test that logged nothing) nothing is written.
    """

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(PREFIX)
        }
        if not metrics:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(logger.hparams, metrics, step=trainer.global_step)
