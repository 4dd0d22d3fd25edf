"""The one error a user can fix: :class:`WSLError` names the file and the problem.

Data (:class:`~wsl.data.bad_input.DataError`) and checkpoints
(:class:`~wsl.checkpoint.CheckpointError`) raise their own subclass, so a caller can catch
one kind or all; :func:`~wsl.runtime.run_failure.reported_run` ends a command on any of them
with its one line.
"""

from __future__ import annotations

from pathlib import Path


class WSLError(ValueError):
    """A file wsl cannot use; the message is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type[WSLError], tuple[Path, str]]:
        # Rebuilt from (path, problem), so the error survives pickling (worker processes).
        return (type(self), (self.path, self.problem))
