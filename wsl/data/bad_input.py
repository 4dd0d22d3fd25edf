"""What bad input gets: a :class:`DataError` naming the file, or a counted, logged skip.

Every reader in :mod:`wsl.data` reports problems through a :class:`BadInputPolicy`, so
``data.on_error=raise|skip`` means the same thing everywhere and a bad item never turns
into a silently wrong label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from wsl.runtime.errors import WSLError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")


class DataError(WSLError):
    """Bad input data. The message names the file and the problem."""


@dataclass
class BadInputPolicy:
    """Applies ``data.on_error``: ``raise`` the error, or ``skip`` the item and count it."""

    on_error: str = "raise"
    skipped: list[DataError] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(
                f"data.on_error={self.on_error!r} is not valid; choose one of {ON_ERROR_CHOICES}"
            )

    def report(self, error: DataError) -> None:
        """Raise ``error``, or log it as a skip and count it."""
        if self.on_error == "raise":
            raise error
        self.skipped.append(error)
        log.warning("skipping bad input (%d so far): %s", len(self.skipped), error)

    @property
    def skip_count(self) -> int:
        """How many items were skipped so far."""
        return len(self.skipped)
