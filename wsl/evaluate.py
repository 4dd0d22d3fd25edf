"""``python -m wsl.evaluate ckpt_path=... data.split=test``: test a checkpoint on a split.

The checkpoint holds the config of the run that made it, so the data (root, classes,
transforms, proposals) and the model are rebuilt as trained; ``data.root``,
``data.batch_size`` and ``data.num_workers`` may be overridden. Labels follow the checkpoint's
class order, matched by name (:func:`match_classes`). Writes ``metrics.json`` and
``per_class.csv`` to the run directory. ``python -m wsl.train`` ends with the same test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from wsl.callbacks.result_files import ResultFiles
from wsl.checkpoint import load_module, load_run_config
from wsl.data.annotations import read_class_list
from wsl.data.bad_input import DataError
from wsl.data.voc import voc2007_dir
from wsl.evaluation.results_files import read_results
from wsl.runtime.console import quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.runtime.run_failure import reported_run

log = logging.getLogger(__name__)


def test_and_write(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output_dir: str | Path,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Run ``trainer.test``, writing the model's ``test_results`` to ``output_dir`` (see
    :class:`~wsl.callbacks.result_files.ResultFiles`); return the results."""
    trainer.callbacks.append(ResultFiles(output_dir))
    # verbose=False: ResultFiles logs the results (Lightning's table would repeat them)
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    # With ddp_spawn the results stay in the spawned processes: read back what they wrote.
    return model.test_results or read_results(output_dir)


def match_classes(data_cfg: DictConfig, ckpt_path: str | Path, model_classes: list[str]) -> None:
    """Make ``data_cfg`` label the data in the checkpoint's class order, matching by name.

    The data set's classes (``data.classes`` of the run, else ``classes.txt`` of
    ``data.root``, else VOC's 20) must be the checkpoint's; listed in another order, they are
    matched by name (with a warning), since labels in the data set's order would be permuted
    against the model's outputs and every metric would be wrong.
    """
    if data_cfg.get("classes"):
        where, data_classes = Path(str(ckpt_path)), list(data_cfg.classes)
        source = "data.classes of its run"
    else:
        voc_dir = voc2007_dir(data_cfg.root)
        data_classes = list(read_class_list(voc_dir))
        where = voc_dir / "classes.txt"
        source = str(where) if where.is_file() else f"VOC's 20 classes (no {where})"
    if set(data_classes) != set(model_classes):
        missing = [c for c in model_classes if c not in data_classes]
        extra = [c for c in data_classes if c not in model_classes]
        raise DataError(
            where,
            f"the data's classes ({source}) are not those of the checkpoint {ckpt_path}: "
            f"missing {missing or 'none'}; not in the checkpoint {extra or 'none'}",
        )
    if data_classes != model_classes:
        log.warning(
            "%s lists the checkpoint's classes in another order; labels are matched to the "
            "model's outputs by name (checkpoint order: %s)",
            source, ", ".join(model_classes),
        )  # fmt: skip
    data_cfg.classes = list(model_classes)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild data and model from ``cfg.ckpt_path``, test on ``cfg.data.split``, write files."""
    run_cfg = load_run_config(cfg.ckpt_path)
    with open_dict(run_cfg):
        run_cfg.data.test_split = cfg.data.split
        for key in ("root", "batch_size", "num_workers"):
            if cfg.data.get(key) is not None:
                run_cfg.data[key] = cfg.data[key]
        model = load_module(cfg.ckpt_path, run_cfg)
        match_classes(run_cfg.data, cfg.ckpt_path, list(model.class_names))
    datamodule = hydra.utils.instantiate(run_cfg.data)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False
    )
    return test_and_write(trainer, model, datamodule, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.evaluate``."""
    quiet_console()
    with reported_run(cfg.paths.output_dir):
        results = evaluate(cfg)
    for name, value in results["metrics"].items():
        print(f"{name:>10}: {value:.4f}" if value is not None else f"{name:>10}: -")


if __name__ == "__main__":
    main()
