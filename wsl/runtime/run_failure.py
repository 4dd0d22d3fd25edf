"""How a command ends when it fails or is stopped: the reason in its log and report, and for an
error the user can fix, one clear line instead of a traceback.

Errors the user can fix are the project's own, each naming the file (or the setting) and the
problem: :class:`~wsl.runtime.errors.WSLError` (data, checkpoints: a file and its problem),
:class:`~wsl.runtime.run_dir.RunDirError` and :class:`~wsl.runtime.settings.SettingError`. For
them a single run logs one ``ERROR`` line and exits with status 1; ``HYDRA_FULL_ERROR=1`` keeps
the traceback (as Hydra does for every other error). In a sweep (``-m``) the error is raised as
usual, so Hydra records the job as failed and goes on.

SIGTERM (what SLURM and most schedulers send before a kill) during training or testing reaches
here as Lightning's ``SIGTERMException``, after
:class:`~wsl.callbacks.last_checkpoint.LastCheckpoint` saved the current step: the log and the
report say the run was stopped and how to resume, and the process exits with status 143
(128 + SIGTERM, what a shell reports for a process killed by it), never 0, so the scheduler
does not count the run as done.

The run's report is written by the :class:`ReportWriter` the command passes (``wsl.train`` and
``wsl.evaluate``: :func:`~wsl.reporting.run_report.report_finished_run`), so this module, below
the reports, does not import them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.utilities.exceptions import SIGTERMException

from wsl.runtime.errors import WSLError
from wsl.runtime.run_dir import RunDirError
from wsl.runtime.settings import SettingError

log = logging.getLogger(__name__)

USER_ERRORS = (WSLError, RunDirError, SettingError)
SIGTERM_EXIT_STATUS = 143  # 128 + SIGTERM (15)


class ReportWriter(Protocol):
    """Writes the report of ``run_dir`` when its command ends: why it failed (``failure``) or
    was stopped (``stopped``), both ``None`` when it finished."""

    def __call__(
        self, run_dir: str | Path, failure: str | None = None, stopped: str | None = None
    ) -> Any: ...


def _single_run() -> bool:
    """Whether this is a single Hydra run (not a job of a sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def _report(
    report: ReportWriter, run_dir: str | Path, failure: str | None, stopped: str | None = None
) -> None:
    """The run's report; a report that cannot be written must not hide why the run failed."""
    try:
        report(run_dir, failure=failure, stopped=stopped)
    except OSError as error:
        log.warning("could not write the run's report: %s", error)


@contextmanager
def reported_run(run_dir: str | Path, report: ReportWriter | None = None) -> Iterator[None]:
    """Run the block; afterwards write the report of ``run_dir`` with ``report`` (none if
    ``None`` or ``False``), saying why the run failed if it did, and end a single run on a user
    error with one line."""
    try:
        yield
    except SIGTERMException:
        checkpoint = Path(run_dir) / "checkpoints" / "last.ckpt"
        stopped = (
            f"stopped by SIGTERM; resume with ckpt_path={checkpoint} (or ckpt_path=last "
            f"hydra.run.dir={run_dir})"
            if checkpoint.is_file()
            else "stopped by SIGTERM (no training state to save: run the command again)"
        )
        log.error("%s", stopped)
        if report:
            _report(report, run_dir, None, stopped=stopped)
        sys.exit(SIGTERM_EXIT_STATUS)
    except USER_ERRORS as error:
        log.error("%s", error)
        if report and not isinstance(error, RunDirError):
            _report(report, run_dir, str(error))
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not _single_run():
            raise
        sys.exit(1)
    except BaseException as error:  # a bug, or Ctrl-C: the traceback follows from Hydra
        failure = f"{type(error).__name__}: {error}".rstrip(": ")
        log.error("failed: %s", failure)
        if report:
            _report(report, run_dir, failure)
        raise
    if report:
        _report(report, run_dir, None)
