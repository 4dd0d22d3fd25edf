"""``python -m wsl.train [group=choice ...] [key=value ...]``: compose, build, fit, test.

Every object comes from the composed config with ``hydra.utils.instantiate``; see
``conf/train.yaml`` for the groups. With no ``model`` chosen, the run only sets up the
data (reads and checks every split) and reports what it found. After fitting, the model is
tested on ``data.test_split`` and ``metrics.json`` / ``per_class.csv`` are written to the
run directory, as ``python -m wsl.evaluate`` does.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint, LearningRateMonitor

from wsl.callbacks.run_config import RunConfigInCheckpoint
from wsl.checkpoint import StagedCheckpointIO, check_family
from wsl.data.datamodule import VOCDataModule
from wsl.evaluate import test_and_write
from wsl.runtime.console import progress_bar_enabled, quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.runtime.run_dir import ensure_writable
from wsl.runtime.run_failure import reported_run

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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build everything ``cfg`` names, then fit and test; return the final metrics."""
    ensure_writable(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule: VOCDataModule = hydra.utils.instantiate(cfg.data)
    if cfg.get("model") is None:
        log.info("no model chosen (model=...): checking the data only")
        return {f"images/{stage}": n for stage, n in check_data(datamodule).items()}
    if cfg.get("ckpt_path"):
        check_family(cfg.ckpt_path, cfg.model)
    model: pl.LightningModule = hydra.utils.instantiate(
        cfg.model, class_names=datamodule.class_names
    )
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = [*instantiate_all(cfg.get("callbacks")), RunConfigInCheckpoint(plain_cfg)]
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[StagedCheckpointIO()],  # checkpoints staged beside themselves, not in TMPDIR
        # only the checkpoints of conf/callbacks (no default one from Lightning)
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=progress_bar_enabled(cfg.trainer.get("enable_progress_bar")),
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(plain_cfg)
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if not cfg.test:
        return {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt_path = None if cfg.train else cfg.get("ckpt_path")
    return test_and_write(trainer, model, datamodule, cfg.paths.output_dir, ckpt_path)["metrics"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``python -m wsl.train``; returns the final ``optimized_metric`` if set.

    Hyperparameter sweepers (Optuna: ``conf/hparams_search/``) optimize that return value.
    """
    quiet_console()
    with reported_run(cfg.paths.output_dir):
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
