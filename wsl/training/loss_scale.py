"""What a ``training_step`` returns so that one optimizer step is the step of the global batch.

Two things stand between the loss a process computes and the gradient the optimizer applies:

- DDP *averages* the gradients of the ``world_size`` processes;
- gradient accumulation (``trainer.accumulate_grad_batches = a``): Lightning divides each
  batch's loss by ``a`` and sums the gradients of the ``a`` batches before the step.

**A mean over images** (the Localizer's BCE) needs nothing: the average over processes of
per-process means, and the ``1/a``-weighted sum of ``a`` batch means, are the mean over all
``k x a x n`` images of the step, because every process holds a batch of the same size
(``DistributedSampler`` pads the split so that each rank gets as many images as the others).
The one inexact case is the last batch of an epoch when it is shorter than ``data.batch_size``
and shares an accumulation window with full ones: its images then weigh more, as in any loop
that divides by the number of accumulated batches.

**A sum over images** (WSDDN, whose objective is the per-image loss summed over the batch, so
that the original's batch-of-one learning rate carries over) must undo both: each process
returns its sum times ``world_size x accumulate_grad_batches`` (:func:`sum_over_global_batch`).
Then ``k`` processes of ``n`` images step as one process with ``k x n`` images, and ``a``
accumulated batches of ``n`` as one batch of ``a x n``; a last window of ``m < a`` batches
steps as one batch of its ``m x n`` images.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor


def sum_over_global_batch(per_image: Tensor, num_images: int, trainer: pl.Trainer | None) -> Tensor:
    """The loss to return for an objective summed over images, from its per-image mean over
    this process's ``num_images`` images; ``trainer`` ``None`` (a module used on its own):
    one process, no accumulation."""
    if trainer is None:
        return per_image * num_images
    return per_image * (num_images * trainer.world_size * trainer.accumulate_grad_batches)
