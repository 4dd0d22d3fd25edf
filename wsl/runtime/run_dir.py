"""The run directory must be writable before any work starts.

Hydra creates the run directory and writes ``.hydra/`` and ``<task>.log`` there before the task
runs, so an unwritable one would fail inside Hydra with its own traceback: :class:`RunDirCheck`
(a Hydra callback, ``conf/hydra/default.yaml``) checks it first and ends with one line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from wsl.runtime.atomic import atomic_path


class RunDirError(OSError):
    """The run directory cannot be created or written."""


def _probe(folder: Path) -> None:
    """Create ``folder`` if needed and write (then delete) a file there."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / ".write_check") as probe:
        probe.write_text("ok\n")
    (folder / ".write_check").unlink()


def _run_dir_error(run_dir: Path, error: OSError) -> RunDirError:
    """One line naming ``run_dir`` and why it cannot be written."""
    blocking = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
    reason = f"{blocking} is a file, not a folder" if blocking else (error.strerror or str(error))
    return RunDirError(
        f"cannot write to the run directory {run_dir} ({reason}); "
        "choose a writable one with hydra.run.dir=DIR (or paths.log_dir=DIR)"
    )


def ensure_writable(run_dir: str | Path) -> Path:
    """Create ``run_dir`` if needed and prove a file can be written there, or raise clearly."""
    run_dir = Path(run_dir)
    try:
        _probe(run_dir)
    except OSError as error:
        raise _run_dir_error(run_dir, error) from None
    return run_dir


def check_run_dir(run_dir: str | Path) -> None:
    """Raise :class:`RunDirError` unless ``run_dir`` (if it exists) or else its parent (created
    if needed; not the run directory itself, whose name holds the start time that Hydra
    resolves again) can be written."""
    run_dir = Path(run_dir)
    try:
        _probe(run_dir if run_dir.is_dir() else run_dir.parent)
    except OSError as error:
        raise _run_dir_error(run_dir, error) from None


class RunDirCheck(Callback):
    """Check the run (or sweep) directory before Hydra creates it; on failure print one line
    naming it and exit with status 1 (``HYDRA_FULL_ERROR=1`` raises instead)."""

    def _check(self, run_dir: str) -> None:
        try:
            check_run_dir(run_dir)
        except RunDirError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(1)

    # The run and sweep dirs name the experiment through ${hydra:runtime.choices...}, which
    # resolves only once HydraConfig holds the config; Hydra sets it only after these hooks.
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self._check(config.hydra.sweep.dir)
