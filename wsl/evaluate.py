"""``python -m wsl.evaluate ckpt_path=... data.split=test``: test a checkpoint on a split.

The checkpoint holds the config of the run that made it, so the data (root, classes,
transforms, proposals) and the model are rebuilt as trained; ``data.root``,
``data.batch_size`` and ``data.num_workers`` may be overridden. Writes ``metrics.json`` and
``per_class.csv`` to the run directory. ``python -m wsl.train`` ends with the same test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from wsl.callbacks.run_config import CHECKPOINT_KEY
from wsl.callbacks.test_results_files import TestResultsFiles
from wsl.evaluation.results_files import read_results
from wsl.instantiate import instantiate_all
from wsl.reporting.run_report import report_finished_run

log = logging.getLogger(__name__)


def test_and_write(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output_dir: str | Path,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Run ``trainer.test``, writing the model's ``test_results`` to ``output_dir`` (see
    :class:`~wsl.callbacks.test_results_files.TestResultsFiles`); return the results."""
    trainer.callbacks.append(TestResultsFiles(output_dir))
    # verbose=False: TestResultsFiles logs the results (Lightning's table would repeat them)
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    # With ddp_spawn the results stay in the spawned processes: read back what they wrote.
    return model.test_results or read_results(output_dir)


def load_run_config(ckpt_path: str | Path) -> DictConfig:
    """The composed config of the run that wrote ``ckpt_path``."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(
            f"{ckpt_path}: no '{CHECKPOINT_KEY}' entry; it was not written by `wsl.train`"
        )
    return OmegaConf.create(checkpoint[CHECKPOINT_KEY])


def load_module(
    ckpt_path: str | Path, run_cfg: DictConfig, map_location: str | torch.device = "cpu"
) -> pl.LightningModule:
    """The LightningModule of ``ckpt_path``, rebuilt from its run's config ``run_cfg``."""
    module_class = hydra.utils.get_class(run_cfg.model._target_)
    # The checkpoint has every weight: do not fetch ImageNet weights again.
    net = {**OmegaConf.to_container(run_cfg.model.get("net", {})), "weights": "none"}
    return module_class.load_from_checkpoint(ckpt_path, map_location=map_location, net=net)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild data and model from ``cfg.ckpt_path``, test on ``cfg.data.split``, write files."""
    run_cfg = load_run_config(cfg.ckpt_path)
    with open_dict(run_cfg):
        run_cfg.data.test_split = cfg.data.split
        for key in ("root", "batch_size", "num_workers"):
            if cfg.data.get(key) is not None:
                run_cfg.data[key] = cfg.data[key]
    datamodule = hydra.utils.instantiate(run_cfg.data)
    model = load_module(cfg.ckpt_path, run_cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False
    )
    return test_and_write(trainer, model, datamodule, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.evaluate``."""
    try:
        results = evaluate(cfg)
    finally:
        report_finished_run(cfg.paths.output_dir)
    for name, value in results["metrics"].items():
        print(f"{name:>10}: {value:.4f}" if value is not None else f"{name:>10}: -")


if __name__ == "__main__":
    main()
