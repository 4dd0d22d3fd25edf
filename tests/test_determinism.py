"""Same seed and ``trainer.deterministic=true``: two CPU runs give the same metrics."""

from __future__ import annotations

from pathlib import Path

from tests.support import compose_cfg
from wsl.train import train


def run(root: Path, output_dir: Path, seed: int) -> dict[str, float]:
    overrides = [
        "experiment=localizer_demo", f"data.root={root}", "data.batch_size=4",
        "data.num_workers=0", "data.train_transform.scales=[64]",
        "data.eval_transform.scales=[64]", "trainer.max_epochs=2", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", "logger=none", "~callbacks.heatmaps", f"seed={seed}",
    ]  # fmt: skip
    return train(compose_cfg("train", overrides, output_dir))


def test_same_seed_same_metrics_other_seed_other_metrics(
    generated_root: Path, tmp_path: Path
) -> None:
    first = run(generated_root, tmp_path / "a", seed=7)
    second = run(generated_root, tmp_path / "b", seed=7)
    other = run(generated_root, tmp_path / "c", seed=8)
    assert first == second
    assert first != other
