"""Checkpoint files: read them safely with clear errors, write them beside their destination.

Reading uses ``torch.load(weights_only=True)`` only. A file that is damaged, is not a PyTorch
checkpoint, or holds objects safe loading refuses gets a :class:`CheckpointError` naming the
file; the advice PyTorch prints in that case (retry with ``weights_only=False``) is never passed
on, since that would run whatever code the file holds.

Writing: Lightning's default ``TorchCheckpointIO`` saves through an fsspec transaction, which
stages the whole file in the system temp directory (``tempfile.mkstemp()``) and then moves it: a
full ``TMPDIR`` breaks saving although the run directory has room, and a run killed mid-save
leaves an orphan there. :class:`StagedCheckpointIO` writes a partial file beside the destination
(``.<name>.<random>.partial``) and renames it into place; :func:`remove_stale_partials` removes
what an interrupted save left, at the next start.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from wsl.callbacks.run_config import CHECKPOINT_KEY
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"  # a checkpoint being written: .<name>.<random>.partial
PARTIAL_PATTERN = f".*.ckpt*{PARTIAL_SUFFIX}"  # ours (and LastCheckpoint's .last.ckpt.partial)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used. The message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type[CheckpointError], tuple[Path, str]]:
        return (type(self), (self.path, self.problem))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of checkpoint ``path`` (tensors memory-mapped, on the CPU), safely loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    damaged = "is damaged (e.g. cut short by an interrupted copy) or is not a wsl checkpoint"
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, f"{damaged}: not a complete zip archive as torch.save writes")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # PyTorch's text advises unsafe loading: not repeated
        raise CheckpointError(
            path, f"{damaged}: it holds objects that safe loading refuses"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).split(". ")[0]  # miniz's first sentence says what broke
        raise CheckpointError(path, f"{damaged} (PyTorch cannot read it: {reason})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(path, f"{damaged}: it holds a {type(checkpoint).__name__}")
    return checkpoint


def load_run_config(ckpt_path: str | Path) -> DictConfig:
    """The composed config of the run that wrote ``ckpt_path``."""
    checkpoint = read_checkpoint(ckpt_path)
    if CHECKPOINT_KEY not in checkpoint:
        raise CheckpointError(
            ckpt_path, f"no '{CHECKPOINT_KEY}' entry: it was not written by `wsl.train`"
        )
    return OmegaConf.create(checkpoint[CHECKPOINT_KEY])


def family(run_cfg: DictConfig) -> str:
    """The model class a run's config builds, e.g. ``LocalizerModule``."""
    return str(run_cfg.model._target_).rsplit(".", 1)[-1]


def check_family(ckpt_path: str | Path, model_cfg: DictConfig) -> None:
    """Raise unless ``ckpt_path`` was written by the model class ``model_cfg`` builds."""
    run_cfg = load_run_config(ckpt_path)
    if run_cfg.get("model") is None:
        raise CheckpointError(ckpt_path, "its run trained no model (model=null)")
    found, expected = family(run_cfg), str(model_cfg._target_).rsplit(".", 1)[-1]
    if found != expected:
        raise CheckpointError(
            ckpt_path,
            f"a {found} checkpoint, but the model chosen is a {expected}; choose the model "
            "the checkpoint was trained with (its config is inside it) or another checkpoint",
        )


def load_module(
    ckpt_path: str | Path, run_cfg: DictConfig, map_location: str | torch.device = "cpu"
) -> pl.LightningModule:
    """The LightningModule of ``ckpt_path``, rebuilt from its run's config ``run_cfg``."""
    if run_cfg.get("model") is None:
        raise CheckpointError(ckpt_path, "its run trained no model (model=null)")
    module_class = hydra.utils.get_class(run_cfg.model._target_)
    # The checkpoint has every weight: do not fetch ImageNet weights again.
    net = {**OmegaConf.to_container(run_cfg.model.get("net", {})), "weights": "none"}
    try:
        return module_class.load_from_checkpoint(ckpt_path, map_location=map_location, net=net)
    except (RuntimeError, KeyError) as error:  # state-dict key lists: not for the user
        raise CheckpointError(
            ckpt_path,
            f"its weights do not fit the {family(run_cfg)} its config describes "
            f"({type(error).__name__}); the file was changed after `wsl.train` wrote it",
        ) from None


class StagedCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, staging each file beside its destination (not in the
    system temp directory) and renaming it into place."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, suffix=PARTIAL_SUFFIX) as partial:
            torch.save(checkpoint, partial)


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete the partial checkpoints an interrupted save left in ``folder``; return them."""
    folder = Path(folder)
    stale = sorted(folder.glob(PARTIAL_PATTERN)) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint save", path)
    return stale
