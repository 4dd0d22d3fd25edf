"""Numeric settings checked before any work starts: one line naming the key and its range.

Left to the libraries, ``data.batch_size=0`` fails inside the DataLoader with a traceback after
the data is read, ``model.optimizer.lr=-0.01`` is refused by ``torch.optim`` only when fitting
starts, and ``data.num_workers=-1`` fails when the first batch is loaded. :func:`check_settings`
tests the keys of :data:`RANGES` that a composed config has (absent or null ones are skipped: a
config without a model, an optimizer without momentum) and raises :class:`SettingError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf


class SettingError(ValueError):
    """A setting outside its range; the message names the key, the value and the range."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key -> (test, the allowed values in words)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.optimizer.lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "model.optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "model.optimizer.momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "data.batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "data.num_workers": (lambda v: _integer(v) and v >= 0, "an integer >= 0 (0: no workers)"),
    "trainer.max_epochs": (
        lambda v: _integer(v) and (v >= 1 or v == -1),
        "an integer >= 1, or -1 for no limit",
    ),
    "trainer.max_steps": (
        lambda v: _integer(v) and (v >= 1 or v == -1),
        "an integer >= 1, or -1 for no limit",
    ),
    "trainer.accumulate_grad_batches": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}


def check_settings(cfg: DictConfig) -> None:
    """Raise :class:`SettingError` for the first key of :data:`RANGES` outside its range."""
    for key, (valid, allowed) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not valid(value):
            raise SettingError(f"{key}={value!r} is not allowed: it must be {allowed}")
