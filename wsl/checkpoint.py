"""Checkpoint files: read them safely and check what they hold, write them beside their
destination; every problem is one :class:`CheckpointError` naming the file.

Reading uses ``torch.load(weights_only=True)`` only. A file that is damaged, is not a PyTorch
checkpoint, or holds objects safe loading refuses is named as such; the advice PyTorch prints in
that case (retry with ``weights_only=False``) is never passed on, since that would run whatever
code the file holds. What a safely loaded file holds is still someone else's data:
:func:`check_checkpoint` refuses a stored run config that names anything but wsl's allow-listed
classes (:mod:`wsl.runtime.stored_config`), class names that are not plain names, and
Lightning callback states naming files outside their folder. :class:`RunCheckpoint` rebuilds a
model from a checked file (``wsl.evaluate``, ``wsl.predict``, ``wsl.load``); resuming reads
through :class:`RunCheckpointIO`, with the same checks.

Writing: Lightning's default ``TorchCheckpointIO`` saves through an fsspec transaction, which
stages the whole file in the system temp directory (``tempfile.mkstemp()``) and then moves it: a
full ``TMPDIR`` breaks saving although the run directory has room, and a run killed mid-save
leaves an orphan there. :class:`RunCheckpointIO` writes a partial file beside the destination
(``.<name>.<random>.partial``) and renames it into place; :func:`remove_stale_partials` removes
what an interrupted save left, at the next start.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from wsl.runtime.atomic import atomic_path
from wsl.runtime.errors import WSLError
from wsl.runtime.names import name_problem
from wsl.runtime.stored_config import CHECKPOINT_KEY, UntrustedConfigError, check_stored_config

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"  # a checkpoint being written: .<name>.<random>.partial
PARTIAL_PATTERN = f".*.ckpt*{PARTIAL_SUFFIX}"  # ours (and LastCheckpoint's .last.ckpt.partial)
FULL_DISK_BYTES = 16 << 20  # a save that failed with less free space than this: the disk is full

# The model classes of wsl before the one training module (a family per LightningModule):
# their checkpoints' configs and weights do not fit today's, and are retrained
FORMER_MODULES = frozenset(
    f"wsl.training.{name}"
    for name in (
        "localizer_module.LocalizerModule",
        "wsddn_module.WSDDNModule",
        "refinement_module.RefinementModule",
    )
)


class CheckpointError(WSLError):
    """A checkpoint that cannot be used. The message names the file and the problem."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of checkpoint ``path`` (tensors memory-mapped, on the CPU), safely loaded."""
    if "://" in str(path):
        raise CheckpointError(
            path, "is a URL: wsl reads local checkpoint files only (download it first)"
        )
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


def _ckpt_paths_outside(state: Mapping[str, Any]) -> list[str]:
    """The file paths of a ``ModelCheckpoint`` state that lie outside its ``dirpath``."""
    folder = state.get("dirpath")
    paths = [
        state.get(key) for key in ("best_model_path", "kth_best_model_path", "last_model_path")
    ]
    paths += list(state.get("best_k_models") or {})
    paths = [p for p in paths if p]
    if not isinstance(folder, str):
        return [str(p) for p in paths]
    inside = os.path.normpath(os.path.abspath(folder))
    return [
        str(p)
        for p in paths
        if not isinstance(p, str)
        or os.path.commonpath([inside, os.path.normpath(os.path.abspath(p))]) != inside
    ]


def family_name(model_cfg: Any) -> str:
    """The name of the model family a ``model`` config builds (``model.net``'s class)."""
    return str(OmegaConf.select(model_cfg, "net._target_")).rsplit(".", 1)[-1]


def check_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless what ``checkpoint`` (read from ``path``) holds
    beside its tensors is data wsl can use as it is: its run config passes
    :func:`~wsl.runtime.stored_config.check_stored_config`, its class names are plain names,
    and each ``ModelCheckpoint`` state names only files in its own folder (Lightning deletes
    those files as a resumed run goes on)."""
    config = checkpoint.get(CHECKPOINT_KEY)
    if config is not None:
        if not isinstance(config, Mapping):
            raise CheckpointError(path, f"its '{CHECKPOINT_KEY}' entry is not a config")
        model = config.get("model")
        former = model.get("_target_") if isinstance(model, Mapping) else None
        if former in FORMER_MODULES:
            raise CheckpointError(
                path,
                f"written by an older wsl, whose model classes ({str(former).rsplit('.', 1)[-1]}) "
                "are gone: train it again (docs/troubleshooting.md)",
            )
        try:
            check_stored_config(config)
        except UntrustedConfigError as error:
            raise CheckpointError(
                path, f"its stored config is refused, nothing was built from it: {error}"
            ) from None
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, Mapping) and "class_names" in hparams:
        _check_class_names(hparams["class_names"], path)
    for key, state in (checkpoint.get("callbacks") or {}).items():
        is_model_checkpoint = str(key).startswith("ModelCheckpoint") and isinstance(state, Mapping)
        outside = _ckpt_paths_outside(state) if is_model_checkpoint else []
        if outside:
            raise CheckpointError(
                path,
                f"its {str(key).split('{')[0]} state names {outside[0]!r}, outside its "
                f"checkpoint folder {state.get('dirpath')!r}: refused (a resumed run would "
                "delete that file)",
            )


def _check_class_names(names: Any, path: str | Path) -> tuple[str, ...]:
    """``names`` as a tuple, if it is a list of distinct plain names; else raise."""
    if not isinstance(names, list | tuple) or not names:
        raise CheckpointError(path, "its class names (hyper_parameters.class_names) are missing")
    for name in names:
        problem = name_problem(name) if isinstance(name, str) else "not a string"
        if problem:
            raise CheckpointError(
                path, f"its class name {name!r} is not a plain name ({problem}): refused"
            )
    if len(set(names)) != len(names):
        raise CheckpointError(path, "its class names repeat a name")
    return tuple(names)


def read_checked(path: str | Path) -> dict[str, Any]:
    """:func:`read_checkpoint`, then :func:`check_checkpoint`: what Lightning resumes from."""
    checkpoint = read_checkpoint(path)
    check_checkpoint(checkpoint, path)
    return checkpoint


@dataclass(frozen=True)
class RunCheckpoint:
    """A checkpoint written by ``wsl.train``, read safely and checked, with its run's config
    and class names; :meth:`build_module` rebuilds its model without running anything the
    file names beyond the allow-listed classes (:mod:`wsl.runtime.stored_config`)."""

    path: Path
    contents: dict[str, Any]
    config: DictConfig  # the run's composed config, resolved
    class_names: tuple[str, ...]  # in the model's output order

    @classmethod
    def read(cls, path: str | Path) -> RunCheckpoint:
        path = Path(path)
        contents = read_checked(path)
        if CHECKPOINT_KEY not in contents:
            raise CheckpointError(
                path, f"no '{CHECKPOINT_KEY}' entry: it was not written by `wsl.train`"
            )
        config = OmegaConf.create(contents[CHECKPOINT_KEY])
        if config.get("model") is None:
            raise CheckpointError(path, "its run trained no model (model=null)")
        hparams = contents.get("hyper_parameters") or {}
        return cls(path, contents, config, _check_class_names(hparams.get("class_names"), path))

    @property
    def family(self) -> str:
        """The model family the run built, e.g. ``WSDDN`` (``model.net``'s class)."""
        return family_name(self.config.model)

    def build_module(self, map_location: str | torch.device = "cpu") -> pl.LightningModule:
        """The run's LightningModule with the checkpoint's weights, on ``map_location``."""
        model_cfg = self.config.model
        net = OmegaConf.to_container(model_cfg.net) if model_cfg.get("net") is not None else {}
        # The checkpoint has every weight: do not fetch ImageNet weights again.
        module = hydra.utils.instantiate(
            model_cfg, class_names=list(self.class_names), net={**net, "weights": "none"}
        )
        state = self.contents.get("state_dict")
        if not isinstance(state, Mapping):
            raise CheckpointError(self.path, "it holds no weights ('state_dict')")
        try:
            module.load_state_dict(state)
        except RuntimeError as error:  # state-dict key lists: not for the user
            raise CheckpointError(
                self.path,
                f"its weights do not fit the {self.family} its config describes "
                f"({type(error).__name__}); the file was changed after `wsl.train` wrote it",
            ) from None
        return module.to(map_location)

    def check_fits(
        self, model_cfg: DictConfig, module: pl.LightningModule, with_optimizer: bool
    ) -> None:
        """Raise :class:`CheckpointError` (one line: what differs) unless a run configured with
        ``model_cfg``, whose model is ``module``, can take this checkpoint's weights and, when
        ``with_optimizer`` (resuming a fit), its optimizer and scheduler state."""
        expected = family_name(model_cfg)
        if self.family != expected:
            raise CheckpointError(
                self.path,
                f"a {self.family} checkpoint, but the model chosen is a {expected}; choose the "
                "model the checkpoint was trained with (its config is inside it) or another "
                "checkpoint",
            )
        mismatch = _weights_mismatch(self.contents.get("state_dict") or {}, module.state_dict())
        if mismatch:
            differing = _differences(
                self.config.model.get("net"), model_cfg.get("net"), "model.net"
            )
            raise CheckpointError(
                self.path,
                f"its weights do not fit the model chosen: {mismatch}"
                + (f" ({differing})" if differing else ""),
            )
        if not with_optimizer:
            return
        for part in ("optimizer", "scheduler"):
            stored = OmegaConf.select(self.config, f"model.{part}._target_")
            chosen = OmegaConf.select(model_cfg, f"{part}._target_")
            if stored != chosen:
                raise CheckpointError(
                    self.path,
                    f"trained with the {part} {stored}, but the config chooses {chosen}; resuming "
                    f"continues its {part}'s state: choose the one it was trained with "
                    f"(model.{part}=...) or train anew without ckpt_path",
                )
        stored_groups = [
            len(s.get("param_groups", [])) for s in self.contents.get("optimizer_states", [])
        ]
        chosen_groups = len(module.parameter_groups())
        if stored_groups and stored_groups[0] != chosen_groups:
            raise CheckpointError(
                self.path,
                f"its optimizer has {stored_groups[0]} parameter groups, the model chosen makes "
                f"{chosen_groups} (model.bias_weight_decay or the learning-rate multipliers "
                "differ from its run's); resume with its run's settings",
            )


def _weights_mismatch(stored: Mapping[str, Any], expected: Mapping[str, Tensor]) -> str | None:
    """The first weight of ``expected`` that ``stored`` lacks or holds in another shape (or
    a weight ``stored`` has in excess), in words; ``None`` if they fit."""
    for key, tensor in expected.items():
        if key not in stored:
            return f"{key} is missing from it"
        shape = tuple(getattr(stored[key], "shape", ()))
        if shape != tuple(tensor.shape):
            return f"{key} is {list(shape)} in it, {list(tensor.shape)} in the model chosen"
    extra = next((key for key in stored if key not in expected), None)
    return f"it has {extra}, which the model chosen lacks" if extra else None


def _differences(stored: Any, chosen: Any, key: str) -> str:
    """The settings under ``key`` that differ between two configs, e.g.
    ``model.net.backbone: vgg16 in its run, alexnet here``."""
    stored = OmegaConf.to_container(stored) if isinstance(stored, DictConfig) else stored or {}
    chosen = OmegaConf.to_container(chosen) if isinstance(chosen, DictConfig) else chosen or {}
    names = sorted({*stored, *chosen} - {"weights"})  # weights: where the start came from
    return "; ".join(
        f"{key}.{name}: {stored.get(name)} in its run, {chosen.get(name)} here"
        for name in names
        if stored.get(name) != chosen.get(name)
    )


def load_run_config(ckpt_path: str | Path) -> DictConfig:
    """The composed config of the run that wrote ``ckpt_path``, checked."""
    return RunCheckpoint.read(ckpt_path).config


class RunCheckpointIO(TorchCheckpointIO):
    """How ``wsl.train``'s trainer writes and reads checkpoint files.

    Saving stages each file beside its destination (not in the system temp directory) and
    renames it into place; a disk that fills up meanwhile is said in one line
    (:class:`CheckpointError`), the previous checkpoint untouched. Loading (resume, and
    ``train=false`` tests) is :func:`read_checked`: safe loading of a local file and the
    checks of :func:`check_checkpoint` (Lightning alone would load a URL unsafely).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, suffix=PARTIAL_SUFFIX) as partial:
            try:
                torch.save(checkpoint, partial)
            except (OSError, RuntimeError) as error:
                folder = Path(path).parent
                # torch's zip writer reports a full disk as "unexpected pos" / "file write failed"
                if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
                    shutil.disk_usage(folder).free < FULL_DISK_BYTES
                ):
                    raise CheckpointError(
                        path,
                        f"not saved: no space left on the disk of {folder} (the previous "
                        "checkpoint there is intact); free some space and resume from it",
                    ) from None
                raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError(path, "wsl loads checkpoints safely only (weights_only=True)")
        return read_checked(path)


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete the partial checkpoints an interrupted save left in ``folder``; return them."""
    folder = Path(folder)
    stale = sorted(folder.glob(PARTIAL_PATTERN)) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint save", path)
    return stale
