"""The run's hyperparameters with its final test metrics, for TensorBoard's HParams tab.

``wsl.train`` logs the composed config when the run starts; the TensorBoard logger keeps it
(``default_hp_metric: false`` in ``conf/logger/tensorboard.yaml``, so no placeholder
``hp_metric = -1`` is written). When a test ends, this callback writes the HParams summaries
of those hyperparameters (flattened with ``/``, as Lightning does; the config groups that do
not change what a run learns, ``callbacks``, ``logger`` and ``paths``, left out, so the
tab's first columns are data, model and trainer settings) naming the test's metrics
(``test/det_mAP``, ...), so the HParams tab lists one row per run with its settings and final
numbers, read from the ``test/...`` scalars the test already logged.

This follows ``lightning_fabric.loggers.tensorboard.TensorBoardLogger.log_hyperparams``, but
does not call it with the metrics: it would log every ``test/...`` scalar a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams

PREFIX = "test/"


@rank_zero_only
def write_hparams(
    logger: TensorBoardLogger, metrics: dict[str, float], left_out: Sequence[str] = ()
) -> None:
    """Write the HParams summaries of ``logger.hparams`` but its top-level keys ``left_out``,
    naming ``metrics`` (already logged)."""
    kept = {key: value for key, value in logger.hparams.items() if key not in left_out}
    params: dict[str, Any] = _flatten_dict(_convert_params(kept))
    writer = logger.experiment
    for summary in hparams(TensorBoardLogger._sanitize_params(params), metrics):
        writer.file_writer.add_summary(summary)
    writer.flush()


class HParamsWithTestMetrics(pl.Callback):
    """On ``on_test_end``, the HParams summaries with the test metrics on each TensorBoard logger.

    The test metrics are the ``test/...`` entries of ``trainer.callback_metrics``; with none
    (a test that logged nothing) nothing is written.

    Args:
        left_out: top-level config keys not shown as hyperparameters.
    """

    def __init__(self, left_out: Sequence[str] = ("callbacks", "logger", "paths")) -> None:
        self.left_out = tuple(left_out)

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
                write_hparams(logger, metrics, self.left_out)
