"""wsl: weakly supervised object localization and detection on VOC-format data.

``wsl.load(ckpt_path)`` (see :mod:`wsl.detector`) is imported on first use, so ``import wsl``
stays cheap. Importing ``wsl`` registers the config resolver ``wsl.or_default`` used in
``conf/hydra/default.yaml``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

__version__ = "0.1.0"
__all__ = ["load"]


def _or_default(value: Any, default: Any) -> Any:
    """``${wsl.or_default:VALUE,DEFAULT}``: ``DEFAULT`` when ``VALUE`` is null."""
    return default if value is None else value


if not OmegaConf.has_resolver("wsl.or_default"):
    OmegaConf.register_new_resolver("wsl.or_default", _or_default)


def __getattr__(name: str) -> Any:
    """Import :func:`wsl.detector.load` lazily (torch and Lightning load only when it is used)."""
    if name == "load":
        from wsl.detector import load

        return load
    raise AttributeError(f"module 'wsl' has no attribute {name!r}")
