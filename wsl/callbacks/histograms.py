"""Histograms of the weights and gradients of chosen layers while a model trains.

Every ``every_n_steps`` optimizer steps (steps 0, k, 2k, ...), just before the optimizer
updates the weights (``on_before_optimizer_step``: the gradients of that step exist, already
accumulated and, with mixed precision, unscaled), each parameter of each named layer is logged:

- TensorBoard: ``add_histogram`` under ``weights/<layer>.<param>`` and
  ``gradients/<layer>.<param>``;
- visdom: one bar window per tag with the counts of ``VISDOM_BINS`` equal-width bins (labels
  are the bin centres). The window is replaced each time: it shows the latest histogram.

A frozen parameter (``requires_grad=False``, e.g. WSDDN's conv1) has no gradient: only its
weights are logged; so is a parameter that got no gradient in that step. Layer names are
``named_modules()`` names of the LightningModule (``net.features.0`` is AlexNet's conv1,
``net.features.3`` its conv2, ``net.fc7`` WSDDN's fc7); they are checked when fitting starts
(``on_fit_start``), before the first step. Only rank 0 logs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from torch import nn

from wsl.loggers.visdom_logger import VisdomLogger
from wsl.runtime.settings import SettingError

VISDOM_BINS = 30


def resolve_layers(module: nn.Module, layers: Sequence[str]) -> dict[str, nn.Parameter]:
    """The parameters of each named submodule of ``module``, keyed ``<layer>.<param>``.

    Raises :class:`~wsl.runtime.settings.SettingError` (a run ends with its one line) naming
    ``callbacks.histograms.layers``, the bad name and the closest valid names (layers with
    parameters) for an unknown name, and for a layer without parameters (e.g. a ReLU).
    """
    valid = [name for name, sub in module.named_modules() if name and _has_parameters(sub)]
    parameters: dict[str, nn.Parameter] = {}
    for layer in layers:
        try:
            submodule = module.get_submodule(layer)
        except AttributeError:
            problem = f"{type(module).__name__} has no layer {layer!r}"
        else:
            own = dict(submodule.named_parameters())
            if own:
                parameters.update({f"{layer}.{name}": p for name, p in own.items()})
                continue
            problem = f"layer {layer!r} ({type(submodule).__name__}) has no parameters"
        close = difflib.get_close_matches(layer, valid, n=5, cutoff=0.6) or valid[:10]
        raise SettingError(
            f"callbacks.histograms.layers: {problem}; close valid names: {close} "
            "(named_modules() names of layers with weights)"
        )
    return parameters


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _bin_labels(edges: np.ndarray) -> list[str]:
    """Bin centres as short labels, with as many digits as it takes to tell them apart."""
    centres = (edges[:-1] + edges[1:]) / 2
    for digits in range(3, 18):
        labels = [f"{c:.{digits}g}" for c in centres]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}: {c!r}" for i, c in enumerate(centres)]


def log_histogram(loggers: Iterable[Logger], tag: str, values: torch.Tensor, step: int) -> None:
    """Log the distribution of ``values`` under ``tag`` to TensorBoard and visdom loggers."""
    values = values.detach().float().cpu().flatten()
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_histogram(tag, values, global_step=step)
        elif isinstance(logger, VisdomLogger):
            counts, edges = np.histogram(values.numpy(), bins=VISDOM_BINS)
            logger.log_bar(tag, counts, _bin_labels(edges))


class ParameterHistograms(pl.Callback):
    """Log histograms of the weights and gradients of ``layers`` every ``every_n_steps`` steps.

    Args:
        layers: submodule names of the LightningModule (``named_modules()`` names).
        every_n_steps: log at optimizer steps 0, k, 2k, ... (before that step's update).
    """

    def __init__(
        self,
        layers: Sequence[str] = ("net.features.0", "net.features.3", "net.fc7"),
        every_n_steps: int = 100,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.layers = list(layers)
        self.every_n_steps = every_n_steps
        self.tracked: dict[str, nn.Parameter] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the strategy has set the model up (moved, wrapped, configure_model built it).
        self.tracked = resolve_layers(pl_module, self.layers)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step % self.every_n_steps:
            return
        for name, parameter in self.tracked.items():
            log_histogram(trainer.loggers, f"weights/{name}", parameter, step)
            if parameter.grad is not None:
                log_histogram(trainer.loggers, f"gradients/{name}", parameter.grad, step)
