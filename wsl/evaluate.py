"""``python -m wsl.evaluate ckpt_path=... data.split=test``: test a checkpoint on a split.

The checkpoint holds the config of the run that made it, so the data (root, classes,
transforms, proposals) and the model are rebuilt as trained, from a checked config
(:class:`~wsl.checkpoint.RunCheckpoint`); ``data.root``, ``data.batch_size`` and
``data.num_workers`` may be overridden. Labels follow the checkpoint's class order, matched by
name (:func:`~wsl.data.class_order.match_classes`). Writes ``metrics.json`` and
``per_class.csv`` to the run directory. ``python -m wsl.train`` ends with the same test.
"""

from __future__ import annotations

from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from wsl.callbacks.result_files import test_and_write
from wsl.checkpoint import RunCheckpoint
from wsl.data.class_order import match_classes
from wsl.reporting.run_report import report_finished_run
from wsl.runtime.console import quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.runtime.run_failure import reported_run
from wsl.runtime.settings import check_groups, check_settings

# The config groups of conf/evaluate.yaml; the data and the model come from the checkpoint.
CONFIG_GROUPS = ("logger", "paths")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild data and model from ``cfg.ckpt_path``, test on ``cfg.data.split``, write files.

    Computed proposals are cached under this run's ``paths.cache_dir``, not where the
    checkpoint's config says: nothing is written where the file names."""
    check_settings(cfg)
    checkpoint = RunCheckpoint.read(cfg.ckpt_path)
    run_cfg = checkpoint.config
    with open_dict(run_cfg):
        run_cfg.data.test_split = cfg.data.split
        for key in ("root", "batch_size", "num_workers"):
            if cfg.data.get(key) is not None:
                run_cfg.data[key] = cfg.data[key]
        if OmegaConf.select(run_cfg, "data.proposals.cache_dir") is not None:
            run_cfg.data.proposals.cache_dir = f"{cfg.paths.cache_dir}/selective_search"
        match_classes(run_cfg.data, cfg.ckpt_path, checkpoint.class_names)
    model = checkpoint.build_module()
    datamodule = hydra.utils.instantiate(run_cfg.data)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False
    )
    return test_and_write(trainer, model, datamodule, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.evaluate``."""
    quiet_console()
    with reported_run(cfg.paths.output_dir, report=report_finished_run):
        check_groups(
            "wsl.evaluate", HydraConfig.get().runtime.choices, CONFIG_GROUPS,
            "the data and the model are rebuilt from the checkpoint (ckpt_path)",
        )  # fmt: skip
        results = evaluate(cfg)
    for name, value in results["metrics"].items():
        print(f"{name:>10}: {value:.4f}" if value is not None else f"{name:>10}: -")


if __name__ == "__main__":
    main()
