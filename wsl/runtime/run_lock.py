"""One run at a time in a run directory: ``<run dir>/.wsl.lock`` holds the running process.

Two runs given one ``hydra.run.dir`` would overwrite each other's ``last.ckpt``, metrics and
pictures while both exit 0. :func:`run_dir_lock` creates the lock file atomically
(``O_CREAT | O_EXCL``) with the PID, its start time (``/proc/<pid>/stat``, so a reused PID is
not taken for the old run), the host and the SLURM job id; a second run finds it and stops with
one line naming the directory and the PID (:class:`~wsl.runtime.run_dir.RunDirError`). A lock
whose process is gone (killed with ``kill -9``, a crashed node of the same host, the same SLURM
job requeued) is stale: it is replaced, with a warning. A lock from another host is trusted,
since its process cannot be checked from here; the message says how to remove it.

Only the process of global rank 0 takes the lock: DDP's other ranks run the same command in the
same directory (their ``LOCAL_RANK``, ``NODE_RANK`` or ``SLURM_PROCID`` is set and not 0).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsl.runtime.run_dir import RunDirError

log = logging.getLogger(__name__)

LOCK_NAME = ".wsl.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may hold spaces


def _owner() -> dict[str, Any]:
    """What the lock file says of this process."""
    return {
        "pid": os.getpid(),
        "start_time": _start_time(os.getpid()),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def _is_stale(owner: dict[str, Any]) -> bool:
    """Whether the process a lock names is certainly gone."""
    if owner.get("host") != socket.gethostname():
        # a job requeued by SLURM runs again under its id, often on another node
        return bool(owner.get("slurm_job_id")) and owner["slurm_job_id"] == os.environ.get(
            "SLURM_JOB_ID"
        )
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True  # a lock file cut short
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    started, recorded = _start_time(pid), owner.get("start_time")
    return None not in (started, recorded) and started != recorded  # the PID was reused


def _read_owner(path: Path) -> dict[str, Any]:
    """The lock file's content; an unreadable one (cut short) counts as a dead owner's."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"host": socket.gethostname(), "pid": None}
    return owner if isinstance(owner, dict) else {"host": socket.gethostname(), "pid": None}


def is_rank_zero() -> bool:
    """Whether this process is the first (or only) one of its run."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def _acquire(path: Path) -> None:
    """Create the lock file for this process, replacing a stale one; raise if it is held."""
    content = json.dumps(_owner())
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if not _is_stale(owner):
                raise RunDirError(
                    f"the run directory {path.parent} is in use by PID {owner.get('pid')} on "
                    f"{owner.get('host')}: wait for that run to end or choose another directory "
                    f"(hydra.run.dir=DIR); if no such run is alive, delete {path}"
                ) from None
            log.warning(
                "%s: replacing the lock of PID %s on %s, which is no longer running",
                path.parent, owner.get("pid"), owner.get("host"),
            )  # fmt: skip
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as file:
            file.write(content + "\n")
        return
    raise RunDirError(f"could not lock the run directory {path.parent}: another run took it")


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the block (rank 0 only); release it after."""
    if not is_rank_zero():
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path)
    try:
        yield
    finally:
        if _read_owner(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
