"""How a command ends when it fails: the reason in its log and report, and for an error the
user can fix, one clear line instead of a traceback.

Errors the user can fix are the project's own, each naming the file and the problem:
:class:`~wsl.data.bad_input.DataError` (data), :class:`~wsl.checkpoint.CheckpointError` and
:class:`~wsl.runtime.run_dir.RunDirError`. For them a single run logs one ``ERROR`` line and exits
with status 1; ``HYDRA_FULL_ERROR=1`` keeps the traceback (as Hydra does for every other error). In
a sweep (``-m``) the error is raised as usual, so Hydra records the job as failed and goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from wsl.checkpoint import CheckpointError
from wsl.data.bad_input import DataError
from wsl.reporting.run_report import report_finished_run
from wsl.runtime.run_dir import RunDirError

log = logging.getLogger(__name__)

USER_ERRORS = (DataError, CheckpointError, RunDirError)


def _single_run() -> bool:
    """Whether this is a single Hydra run (not a job of a sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def _report(run_dir: str | Path, failure: str | None) -> None:
    """The run's report; a report that cannot be written must not hide why the run failed."""
    try:
        report_finished_run(run_dir, failure=failure)
    except OSError as error:
        log.warning("could not write the run's report: %s", error)


@contextmanager
def reported_run(run_dir: str | Path, report: bool = True) -> Iterator[None]:
    """Run the block; afterwards write the report of ``run_dir`` (if ``report``), saying why
    the run failed if it did, and end a single run on a user error with one line."""
    try:
        yield
    except USER_ERRORS as error:
        log.error("%s", error)
        if report and not isinstance(error, RunDirError):
            _report(run_dir, str(error))
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not _single_run():
            raise
        sys.exit(1)
    except BaseException as error:  # a bug, or Ctrl-C: the traceback follows from Hydra
        failure = f"{type(error).__name__}: {error}".rstrip(": ")
        log.error("failed: %s", failure)
        if report:
            _report(run_dir, failure)
        raise
    if report:
        _report(run_dir, None)
