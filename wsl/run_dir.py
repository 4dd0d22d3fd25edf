"""The run directory must be writable before any work starts."""

from __future__ import annotations

from pathlib import Path

from wsl.atomic import atomic_path


class RunDirError(OSError):
    """The run directory cannot be created or written."""


def ensure_writable(run_dir: str | Path) -> Path:
    """Create ``run_dir`` if needed and prove a file can be written there, or raise clearly."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / ".write_check") as probe:
            probe.write_text("ok\n")
        (run_dir / ".write_check").unlink()
    except OSError as error:
        raise RunDirError(
            f"cannot write to the run directory {run_dir} ({error.strerror or error}); "
            "choose a writable one with hydra.run.dir=DIR (or paths.log_dir=DIR)"
        ) from None
    return run_dir
