"""``python -m wsl.inspect data.root=... split=trainval index=2018`` (the course's Task 0).

Prints the image's file name and classes, and draws two pictures: the GT boxes, and the
top proposals. Both go to the run directory (``gt_boxes.png``, ``proposals.png``), to
TensorBoard and, when a server answers, to visdom.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wsl.data.datamodule import VOCProposalsDataModule
from wsl.data.images import read_rgb_tensor
from wsl.data.split_index import ImageRecord
from wsl.drawing import PALETTE, draw_boxes, save_png
from wsl.loggers.images import log_image
from wsl.runtime.console import quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.runtime.run_failure import reported_run
from wsl.runtime.settings import SettingError, check_groups

log = logging.getLogger(__name__)

# The config groups of conf/inspect.yaml.
CONFIG_GROUPS = ("data", "logger", "paths")


def describe(record: ImageRecord, classes: list[str]) -> str:
    """One line: file name and the image's classes (difficult-only ones marked)."""
    present = [classes[c] for c in range(len(classes)) if record.labels[c] > 0]
    return f"{record.image_path.name}: {', '.join(present) or '(no objects)'}"


def inspection_pictures(
    record: ImageRecord, classes: list[str], top: int
) -> dict[str, torch.Tensor]:
    """The GT-box picture and the top-``top`` proposals picture of one image."""
    image = read_rgb_tensor(record.image_path)
    objects = record.annotation.objects
    gt = draw_boxes(
        image,
        torch.as_tensor(record.annotation.boxes()),
        labels=[o.name + (" (difficult)" if o.difficult else "") for o in objects],
        colors=[PALETTE[classes.index(o.name) % len(PALETTE)] for o in objects],
    )
    proposals = torch.as_tensor(record.proposals.boxes[:top])
    drawn = draw_boxes(
        image,
        proposals,
        labels=[str(i + 1) for i in range(len(proposals))],
        colors=[PALETTE[i % len(PALETTE)] for i in range(len(proposals))],
    )
    return {"gt_boxes": gt, "proposals": drawn}


def inspect(cfg: DictConfig) -> dict[str, Path]:
    """Describe image ``cfg.index`` of ``cfg.split`` and write its pictures; return their paths."""
    datamodule: VOCProposalsDataModule = hydra.utils.instantiate(cfg.data)
    index = datamodule.build_index(cfg.split)
    if not 0 <= cfg.index < len(index):
        raise SettingError(
            f"index={cfg.index} is out of range: split {cfg.split!r} of {index.data_dir} "
            f"has {len(index)} images (0..{len(index) - 1})"
        )
    record = index[cfg.index]
    classes = list(index.classes)
    print(f"[{cfg.split} #{cfg.index}] {describe(record, classes)}")
    for obj in record.annotation.objects:
        flags = [f for f, on in (("difficult", obj.difficult), ("truncated", obj.truncated)) if on]
        print(f"  {obj.name:<16} box (0-based x1 y1 x2 y2) {obj.box} {' '.join(flags)}")
    output_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_all(cfg.get("logger"))
    written = {}
    for name, picture in inspection_pictures(record, classes, cfg.top_proposals).items():
        written[name] = save_png(picture, output_dir / f"{name}.png")
        log_image(loggers, f"inspect/{cfg.split}/{record.image_id}/{name}", picture)
        print(f"  wrote {written[name]}")
    for logger in loggers:
        logger.finalize("success")
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="inspect")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.inspect``."""
    quiet_console()
    with reported_run(cfg.paths.output_dir):
        check_groups(
            "wsl.inspect", HydraConfig.get().runtime.choices, CONFIG_GROUPS,
            "it draws one image of a data set, with no model",
        )  # fmt: skip
        inspect(cfg)


if __name__ == "__main__":
    main()
