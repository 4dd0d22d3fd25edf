"""``python -m wsl.train [group=choice ...] [key=value ...]``: compose, build, fit, test.

Every object comes from the composed config with ``hydra.utils.instantiate``; see
``conf/train.yaml`` for the groups. With no ``model`` chosen, the run only sets up the
data (reads and checks every split) and reports what it found. After fitting, the model is
tested on ``data.test_split`` and ``metrics.json`` / ``per_class.csv`` are written to the
run directory, as ``python -m wsl.evaluate`` does.

Before any work: the numeric settings are checked (:mod:`wsl.runtime.settings`) and the run
directory is locked (:mod:`wsl.runtime.run_lock`). A ``ckpt_path`` (``last``: this run
directory's ``last.ckpt``) is read checked (:class:`~wsl.checkpoint.RunCheckpoint`), the data
labelled in its class order, and the config must fit it (:meth:`RunCheckpoint.check_fits`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Checkpoint, LearningRateMonitor

from wsl.callbacks.result_files import test_and_write
from wsl.callbacks.run_config import RunConfigInCheckpoint
from wsl.checkpoint import RunCheckpoint, RunCheckpointIO
from wsl.data.class_order import match_classes
from wsl.data.datamodule import VOCDataModule
from wsl.reporting.run_report import report_finished_run
from wsl.runtime.console import progress_bar_enabled, quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.runtime.run_dir import ensure_writable
from wsl.runtime.run_failure import reported_run
from wsl.runtime.run_lock import run_dir_lock
from wsl.runtime.settings import check_settings

log = logging.getLogger(__name__)


def check_data(datamodule: VOCDataModule) -> dict[str, int]:
    """Read and check every split the run would use; return image counts per stage."""
    datamodule.setup()
    counts = {
        stage: len(datamodule.dataset(split, train=stage == "fit"))
        for stage, split in datamodule.splits.items()
    }
    for stage, split in datamodule.splits.items():
        log.info("%s: split %r has %d usable images", stage, split, counts[stage])
    log.info("classes: %s", ", ".join(datamodule.class_names))
    return counts


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``, with ``last`` meaning this run directory's ``checkpoints/last.ckpt``
    (none yet: start from scratch), so a job script that always passes ``ckpt_path=last`` with
    a fixed ``hydra.run.dir`` resumes wherever its previous attempt stopped."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "last":
        return ckpt_path
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("ckpt_path=last: resuming from %s", last)
        return str(last)
    log.info("ckpt_path=last: no %s yet, starting from scratch", last)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build everything ``cfg`` names, then fit and test; return the final metrics."""
    check_settings(cfg)
    ensure_writable(cfg.paths.output_dir)
    with run_dir_lock(cfg.paths.output_dir):
        return _train(cfg, resolve_ckpt_path(cfg))


def _train(cfg: DictConfig, ckpt_path: str | None) -> dict[str, Any]:
    """:func:`train` in its locked run directory, from ``ckpt_path`` (checked) if given."""
    pl.seed_everything(cfg.seed, workers=True)
    checkpoint = None
    if ckpt_path and cfg.get("model") is not None:
        checkpoint = RunCheckpoint.read(ckpt_path)
        with open_dict(cfg):  # label the data in the checkpoint's class order
            match_classes(cfg.data, ckpt_path, checkpoint.class_names)
    datamodule: VOCDataModule = hydra.utils.instantiate(cfg.data)
    if cfg.get("model") is None:
        log.info("no model chosen (model=...): checking the data only")
        return {f"images/{stage}": n for stage, n in check_data(datamodule).items()}
    model: pl.LightningModule = hydra.utils.instantiate(
        cfg.model, class_names=datamodule.class_names
    )
    if checkpoint is not None:
        checkpoint.check_fits(cfg.model, model, with_optimizer=cfg.train)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = [*instantiate_all(cfg.get("callbacks")), RunConfigInCheckpoint(plain_cfg)]
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        # checkpoints staged beside themselves (not in TMPDIR) and read back checked
        plugins=[RunCheckpointIO()],
        # only the checkpoints of conf/callbacks (no default one from Lightning)
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=progress_bar_enabled(cfg.trainer.get("enable_progress_bar")),
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(plain_cfg)
    if cfg.train:
        if cfg.test:  # read and check the test split now: bad input stops before training
            datamodule.setup("test")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    if not cfg.test:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    else:
        test_ckpt = None if cfg.train else ckpt_path
        output_dir = cfg.paths.output_dir
        metrics = test_and_write(trainer, model, datamodule, output_dir, test_ckpt)["metrics"]
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if cfg.train and trainer.is_global_zero and last.is_file():
        log.info("checkpoint: %s", last)  # for wsl.evaluate, wsl.predict and wsl.load
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``python -m wsl.train``; returns the final ``optimized_metric`` if set.

    Hyperparameter sweepers (Optuna: ``conf/hparams_search/``) optimize that return value.
    """
    quiet_console()
    with reported_run(cfg.paths.output_dir, report=report_finished_run):
        metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        raise ValueError(
            f"optimized_metric={name!r} is not a final metric; use one of {sorted(metrics)}"
        )
    return metrics[name]


if __name__ == "__main__":
    main()
