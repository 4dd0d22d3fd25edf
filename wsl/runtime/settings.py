"""Numeric settings checked before any work starts: one line naming the key and its range.

Left to the libraries, ``data.batch_size=0`` fails inside the DataLoader with a traceback after
the data is read, ``model.optimizer.lr=-0.01`` is refused by ``torch.optim`` only when fitting
starts, and ``data.num_workers=-1`` fails when the first batch is loaded. :func:`check_settings`
tests the keys of :data:`RANGES` that a composed config has (absent or null ones are skipped: a
config without a model, an optimizer without momentum) and raises :class:`SettingError`;
:func:`check_groups` refuses a config group a command does not take.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
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


def check_groups(
    command: str, choices: Mapping[str, Any], taken: Collection[str], why: str
) -> None:
    """Raise :class:`SettingError` for a config group ``command`` does not take, saying ``why``.

    ``choices`` is Hydra's ``hydra.runtime.choices`` (group -> option); ``taken`` the groups
    of the command's primary config (Hydra's own, ``hydra/...``, are always taken). A group
    the primary config does not list fails in Hydra (no match in the defaults list), whose
    message then suggests ``+group=option``: that appends it, and the command would ignore it.
    """
    extra = [
        f"{group}={option}"
        for group, option in choices.items()
        if group != "hydra" and not group.startswith("hydra/") and group.split("/")[0] not in taken
    ]
    if extra:
        raise SettingError(
            f"{command} takes no {' '.join(extra)}: {why}; its config groups are "
            f"{', '.join(sorted(taken))} (python -m {command} --help)"
        )
