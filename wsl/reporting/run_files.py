"""What a run directory holds, read for its report: the TensorBoard scalars, the pictures (in
the order the report shows them), config settings and the title (the final results:
:func:`wsl.evaluation.results_files.read_results`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    TENSORS,
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

REPORT_NAME = "report.html"
FILES_DIR = "report_files"


def natural_key(path: Path) -> list[str | int]:
    """Sort key that puts ``epoch_9`` before ``epoch_10``."""
    pieces = re.split(r"(\d+)", path.as_posix())
    return [int(piece) if i % 2 else piece for i, piece in enumerate(pieces)]


ABSENT = object()


ENV_READ = re.compile(r"\$\{oc\.env:\s*([^,}\s]+)")
OWN_VARIABLES = "WSL_"  # the environment variables wsl's own configs read (WSL_ROOT)


def foreign_variables(config: DictConfig) -> list[str]:
    """The environment variables ``config`` reads (``${oc.env:NAME}``) that are not wsl's."""
    text = OmegaConf.to_yaml(config, resolve=False)
    return sorted({n for n in ENV_READ.findall(text) if not n.startswith(OWN_VARIABLES)})


def setting(config: DictConfig, key: str) -> tuple[Any, bool]:
    """``key``'s value and whether it was resolved (else it is shown as written), or
    ``ABSENT``. Interpolations resolve at report time, unless the config reads environment
    variables other than wsl's (:func:`foreign_variables`): a report shows the config of a
    run, never the environment of whoever writes the report."""
    raw: Any = OmegaConf.to_container(config, resolve=False)
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return ABSENT, True
        raw = raw[part]
    if foreign_variables(config):
        return raw, False
    try:
        value = OmegaConf.select(config, key, default=ABSENT)
        if isinstance(value, Container):
            value = OmegaConf.to_container(value, resolve=True)
        return value, True
    except OmegaConfBaseException:
        return raw, False


@contextmanager
def _quiet_tensorboard() -> Iterator[None]:
    """Silence TensorBoard's INFO lines ("Directory watcher advancing ...") while reading."""
    logger = logging.getLogger("tensorboard")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def read_scalars(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the run's TensorBoard event files: ``{tag: (steps, values)}``.

    Read with TensorBoard's ``EventAccumulator`` (every point kept; both the legacy
    ``add_scalar`` format and ``tensorboard.summary`` scalars), folders merged in time order.
    """
    run_dir = Path(run_dir)
    folders = sorted(
        {
            path.parent
            for path in run_dir.rglob("events.out.tfevents.*")
            if FILES_DIR not in path.relative_to(run_dir).parts
        }
    )
    points: dict[str, list[tuple[float, int, float]]] = {}
    for folder in folders:
        # keep every scalar, one item of any other tag (images, histograms)
        events = EventAccumulator(
            str(folder), size_guidance={TENSORS: 1}, tensor_size_guidance={"scalars": 0}
        )
        with _quiet_tensorboard():
            events.Reload()
        if "scalars" not in events.ActivePlugins():
            continue
        for tag in events.PluginTagToContent("scalars"):
            points.setdefault(tag, []).extend(
                (e.wall_time, e.step, float(make_ndarray(e.tensor_proto)))
                for e in events.Tensors(tag)
            )
    scalars = {}
    for tag, series in sorted(points.items()):
        series.sort()
        scalars[tag] = (
            np.array([step for _, step, _ in series]),
            np.array([value for _, _, value in series]),
        )
    return scalars


def _stage(relative: Path) -> Path:
    """The stage a picture belongs to: its folder above ``batch_*`` (else its folder)."""
    for i, part in enumerate(relative.parts):
        if part.startswith("batch_"):
            return Path(*relative.parts[:i])
    return relative.parent


def _picture_key(path: Path) -> tuple[list[str | int], bool, list[str | int]]:
    """Folder by folder; in a folder ``image.png`` (the plain image) before its overlays."""
    return natural_key(path.parent), path.stem != "image", natural_key(Path(path.name))


def pick_pictures(run_dir: str | Path, max_pictures: int) -> tuple[list[Path], int]:
    """Up to ``max_pictures`` PNGs of the run, and how many there are.

    First those at the top of the run directory (``gt_boxes.png``, ...), then those under
    ``pictures/`` by stage: ``final`` stages first, then the latest (``epoch_009`` before
    ``epoch_003``); within a stage folder by folder, each image before its heatmaps.
    """
    run_dir = Path(run_dir)
    pictures = run_dir / "pictures"
    stages: dict[Path, list[Path]] = {}
    for path in pictures.rglob("*.png"):
        stages.setdefault(_stage(path.relative_to(pictures)), []).append(path)
    order = sorted(stages, key=natural_key, reverse=True)
    order.sort(key=lambda stage: "final" not in stage.parts)
    candidates = sorted(run_dir.glob("*.png"), key=natural_key) + [
        path for stage in order for path in sorted(stages[stage], key=_picture_key)
    ]
    return candidates[:max_pictures], len(candidates)


def default_title(run_dir: Path) -> str:
    """``<task> · <experiment> · <folder>`` from the run's ``.hydra`` files (``default`` when
    no experiment was chosen); ``Run <folder>`` when they are missing or unreadable."""
    hydra_dir = run_dir / ".hydra"
    try:
        task = OmegaConf.load(hydra_dir / "config.yaml").get("task_name")
        hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml")
    except (OSError, OmegaConfBaseException, ValueError):
        return f"Run {run_dir.name}"
    experiment = OmegaConf.select(hydra_cfg, "hydra.runtime.choices.experiment") or "default"
    return " · ".join(str(part) for part in (task or "run", experiment, run_dir.name))
