"""Keep the console to what a user needs: drop library messages that say nothing about the run.

Dropped: Lightning's advertising tips ("💡 Tip: ... litlogger / litmodels"), and torch's
``LeafSpec`` deprecation warning that Lightning 2.6 triggers (ours to ignore: nothing in
``wsl`` uses ``LeafSpec``). Other warnings become one log line each (``py.warnings``; in
``<task>.log`` too) naming the file that warned, without the source line. Lightning's
progress bar is kept for terminals only (:func:`progress_bar_enabled`); progress lines come
from :class:`~wsl.callbacks.progress_log.ProgressLog` either way.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

LIGHTNING_TIP = "💡 Tip:"
# The loggers Lightning's rank_zero_info writes through (pytorch_lightning and fabric).
LIGHTNING_INFO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
IGNORED_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


class DropLightningTips(logging.Filter):
    """Reject log records whose message starts with Lightning's "💡 Tip:"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


def log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` replacement: one ``py.warnings`` log line."""
    logging.getLogger("py.warnings").warning(
        "%s: %s (%s:%d)", category.__name__, message, Path(filename).name, lineno
    )


def quiet_console() -> None:
    """Install the filters (idempotent): Lightning tips, the ignored warnings, and warnings
    as log lines."""
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningTips) for f in logger.filters):
            logger.addFilter(DropLightningTips())
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    warnings.showwarning = log_warning


def progress_bar_enabled(setting: bool | None) -> bool:
    """``trainer.enable_progress_bar``: as set, or (null) only when stdout is a terminal."""
    return sys.stdout.isatty() if setting is None else bool(setting)
