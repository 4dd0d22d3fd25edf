"""A NaN/inf loss skips its step and is counted; too many in a row stop the run clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from wsl.data.datamodule import VOCImageLabelsDataModule
from wsl.models.localizer import LocalizerAlexNet, LocalizerOutput
from wsl.training.module import WSLModule


class PoisonedLocalizer(LocalizerAlexNet):
    """A Localizer whose logits are NaN in the training steps listed in ``poisoned``."""

    def __init__(self, num_classes: int, poisoned: list[int], **kwargs) -> None:
        super().__init__(num_classes, **kwargs)
        self.poisoned = set(poisoned)
        self.calls = 0

    def step(self, batch, detect=False):
        if not self.training:
            return super().step(batch, detect)
        forward = self.forward
        poison = self.calls in self.poisoned
        self.calls += 1

        def nan_forward(images: torch.Tensor) -> LocalizerOutput:
            out = forward(images)
            nan = torch.full_like(out.logits, float("nan")) if poison else out.logits
            return LocalizerOutput(out.score_maps, nan)

        self.forward = nan_forward
        try:
            return super().step(batch, detect)
        finally:
            del self.forward


def fit(root: Path, poisoned: set[int], patience: int, tmp_path: Path) -> WSLModule:
    data = VOCImageLabelsDataModule(
        root=str(root), train_split="trainval", val_split="test", test_split="test",
        batch_size=8, train_transform={"resize": "square", "scales": [64]},
        eval_transform={"resize": "square", "scales": [64]},
    )  # fmt: skip
    net = {"_target_": f"{__name__}.PoisonedLocalizer", "poisoned": sorted(poisoned),
           "weights": "none"}  # fmt: skip
    model = WSLModule(
        class_names=data.class_names, net=net,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.01}, max_nonfinite_steps=patience,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    model.start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit(model, datamodule=data)
    return model


def unchanged(model: WSLModule) -> bool:
    return all(torch.equal(model.start[k], v) for k, v in model.state_dict().items())


def test_nonfinite_steps_are_skipped_and_counted(generated_root: Path, tmp_path: Path) -> None:
    model = fit(generated_root, poisoned={0, 1}, patience=3, tmp_path=tmp_path)
    assert model.net.calls == 3  # 24 images in batches of 8
    assert model.loss_guard.skipped == 2
    assert not unchanged(model)  # the finite step trained
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skipped_steps_never_touch_the_weights(generated_root: Path, tmp_path: Path) -> None:
    model = fit(generated_root, poisoned={0, 1, 2}, patience=4, tmp_path=tmp_path)
    assert model.loss_guard.skipped == 3
    assert unchanged(model)


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(
    generated_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(FloatingPointError, match="not finite for 2 steps in a row"):
        fit(generated_root, poisoned={0, 1, 2}, patience=2, tmp_path=tmp_path)
