"""What a config read back from a file may hold before anything is built from it.

A checkpoint stores the composed config of its run (under :data:`CHECKPOINT_KEY`), and
``wsl.evaluate``, ``wsl.predict`` and ``wsl.load`` rebuild the model and the data from it with
``hydra.utils.instantiate``. That config is data from whoever made the file, and Hydra turns
every ``_target_`` in it into a call: ``{_target_: builtins.getattr, ...}`` nested anywhere
would run a shell command or write a file. :func:`check_stored_config` therefore accepts

- a ``_target_`` only at the places the project's own configs (``conf/``) write one
  (:data:`TARGETS`: ``model``, ``model.net``, ``model.optimizer``, ``data.proposals``, ...) and
  only naming a class that place allows (the project's classes, the optimizers and schedulers
  of ``torch.optim`` the configs use, Lightning's trainer, loggers and callbacks);
- ``_recursive_`` and ``_convert_`` (harmless: they only change how arguments are passed)
  beside an accepted ``_target_``;
- no ``_args_`` or ``_partial_`` anywhere (conf/ never writes them), and no interpolation
  (``${...}``: ``wsl.train`` stores its config resolved, so one in a file is not wsl's).

A new class a config names (a model family, a callback) is added to :data:`TARGETS`;
``tests/test_stored_config.py`` fails for every ``_target_`` of ``conf/`` not listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CHECKPOINT_KEY = "wsl_config"  # where a checkpoint holds its run's config

WSL_TARGETS = {
    "model": ("wsl.training.module.WSLModule",),
    "model.net": (
        "wsl.models.localizer.LocalizerAlexNet",
        "wsl.models.localizer.LocalizerAlexNetRobust",
        "wsl.models.wsddn.WSDDN",
        "wsl.models.supervised.SupervisedDetector",
    ),
    "model.net.refinement": (
        "wsl.models.refinement.RefinementHeads",
        "wsl.models.mist.MISTHeads",
    ),
    "data": (
        "wsl.data.datamodule.VOCImageLabelsDataModule",
        "wsl.data.datamodule.VOCProposalsDataModule",
    ),
    "data.layout": (
        "wsl.data.voc.VOCLayout",
        "wsl.data.coco.COCOLayout",
        "wsl.data.image_tags.ImageTagsLayout",
    ),
    "data.proposals": (
        "wsl.data.proposals.MatProposalFiles",
        "wsl.data.proposals.MatProposals",
        "wsl.data.selective_search.SelectiveSearchProposals",
        "wsl.data.proposal_mcg.MCGProposalFiles",
    ),
    "callbacks.*": (
        "wsl.callbacks.box_pictures.BoxPictures",
        "wsl.callbacks.heatmaps.HeatmapPictures",
        "wsl.callbacks.histograms.ParameterHistograms",
        "wsl.callbacks.hparams.HParamsWithTestMetrics",
        "wsl.callbacks.last_checkpoint.LastCheckpoint",
        "wsl.callbacks.periodic_evaluation.PeriodicDetectionEvaluation",
        "wsl.callbacks.progress_log.ProgressLog",
        "pytorch_lightning.callbacks.LearningRateMonitor",
        "pytorch_lightning.callbacks.ModelCheckpoint",
    ),
    "logger.*": (
        "wsl.loggers.visdom_logger.VisdomLogger",
        "pytorch_lightning.loggers.TensorBoardLogger",
    ),
}
# Optimizers and schedulers whose arguments are numbers only (no callables, as LambdaLR's).
NUMERIC_SCHEDULERS = tuple(
    f"torch.optim.lr_scheduler.{name}"
    for name in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR")
)
TORCH_TARGETS = {
    "model.optimizer": tuple(f"torch.optim.{name}" for name in ("SGD", "Adam", "AdamW")),
    # ChainedScheduler: the product of its list of numeric schedulers (experiment=pcl: warm-up
    # then steps), built by wsl.training.module.build_scheduler; one level only
    "model.scheduler": (*NUMERIC_SCHEDULERS, "torch.optim.lr_scheduler.ChainedScheduler"),
    "model.scheduler.schedulers[*]": NUMERIC_SCHEDULERS,
    "trainer": ("pytorch_lightning.Trainer",),
}
# Where a _target_ may stand (a key path; * is one key) and the classes it may name.
TARGETS: dict[str, frozenset[str]] = {
    place: frozenset(names) for place, names in {**WSL_TARGETS, **TORCH_TARGETS}.items()
}
CONVERT_CHOICES = ("none", "partial", "object", "all")  # Hydra's _convert_ values
REFUSED_KEYS = ("_args_", "_partial_")  # Hydra special keys conf/ never writes


class UntrustedConfigError(ValueError):
    """A stored config holds what wsl would not build from; ``key`` is where (dotted)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def target_place(key: str) -> str | None:
    """The :data:`TARGETS` entry whose place ``key`` (a dotted path; list items as ``[i]``,
    matched by a place's ``[*]``) is, or ``None``."""
    parts = re.sub(r"\[\d+\]", "[*]", key).split(".")
    for place in TARGETS:
        pattern = place.split(".")
        if len(pattern) == len(parts) and all(
            p in ("*", k) for p, k in zip(pattern, parts, strict=True)
        ):
            return place
    return None


def _check_node(node: Mapping[Any, Any], key: str) -> None:
    """Raise unless the special keys of the mapping at ``key`` are allowed there."""
    refused = [special for special in REFUSED_KEYS if special in node]
    if refused:
        raise UntrustedConfigError(
            f"{key}.{refused[0]}".lstrip("."), "Hydra's call syntax, which wsl's configs never use"
        )
    has_target = "_target_" in node
    if has_target:
        target, place = node["_target_"], target_place(key)
        where = f"{key}._target_".lstrip(".")
        if place is None:
            raise UntrustedConfigError(where, f"names {target!r} where wsl's configs build nothing")
        if not isinstance(target, str) or target not in TARGETS[place]:
            raise UntrustedConfigError(
                where, f"names {target!r}, not one of the classes wsl builds at {place}"
            )
    for special, valid in (("_recursive_", (True, False)), ("_convert_", CONVERT_CHOICES)):
        if special in node and (not has_target or node[special] not in valid):
            raise UntrustedConfigError(
                f"{key}.{special}".lstrip("."), f"{node[special]!r} is not a value wsl writes here"
            )


def check_stored_config(config: Any, key: str = "") -> None:
    """Raise :class:`UntrustedConfigError` naming the first key of ``config`` (a plain
    mapping, as read from a file) that wsl would not build from (see the module docstring)."""
    if isinstance(config, Mapping):
        _check_node(config, key)
        for name, value in config.items():
            check_stored_config(value, f"{key}.{name}".lstrip("."))
    elif isinstance(config, list | tuple):
        for index, value in enumerate(config):
            check_stored_config(value, f"{key}[{index}]")
    elif isinstance(config, str) and "${" in config:
        raise UntrustedConfigError(
            key, f"holds the interpolation {config!r}; wsl stores its configs resolved"
        )
