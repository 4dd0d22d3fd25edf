"""Non-finite losses: skip the step, count it, and stop after too many in a row."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class NonFiniteLossGuard:
    """Decides whether a training step's loss may be used.

    A NaN or infinite loss is skipped (the step returns ``None``, so no optimizer step) and
    counted; after ``patience`` such steps in a row the run stops with a clear message,
    since the model will not recover by itself.
    """

    def __init__(self, patience: int = 10) -> None:
        if patience < 1:
            raise ValueError(f"max_nonfinite_steps={patience} must be at least 1")
        self.patience = patience
        self.in_a_row = 0
        self.skipped = 0

    def accept(self, loss: torch.Tensor, step: int) -> bool:
        """``True`` for a finite loss; ``False`` (logged, counted) for a step to skip."""
        if bool(torch.isfinite(loss)):
            self.in_a_row = 0
            return True
        self.skipped += 1
        self.in_a_row += 1
        log.warning(
            "step %d: loss is %s; step skipped (%d in a row, %d in all)",
            step, loss.item(), self.in_a_row, self.skipped,
        )  # fmt: skip
        if self.in_a_row >= self.patience:
            raise FloatingPointError(
                f"the loss was not finite for {self.in_a_row} steps in a row (last at step "
                f"{step}); lower model.optimizer.lr, or check the data and the model weights"
            )
        return False
