"""Two DDP processes on CPU (gloo) give the same test metrics as one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_train(data_root: Path, run_dir: Path, *extra: str) -> tuple[dict[str, float], str]:
    command = [
        sys.executable, "-m", "wsl.train", "experiment=localizer_demo", f"data.root={data_root}",
        "data.batch_size=4", "data.num_workers=0", "data.train_transform.scales=[64]",
        "data.eval_transform.scales=[64]", "trainer.enable_progress_bar=false", "logger=none",
        "~callbacks.heatmaps", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (run_dir / "report.html").read_text()  # written at the end of every run
    assert "mAP" in report
    return json.loads((run_dir / "metrics.json").read_text())["metrics"], result.stderr


def test_two_gloo_processes_match_one_process(generated_root: Path, tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    run_train(generated_root, trained, "trainer.max_epochs=2")
    ckpt = trained / "checkpoints" / "last.ckpt"
    one, _ = run_train(generated_root, tmp_path / "one", "train=false", f"ckpt_path={ckpt}")
    two, log = run_train(
        generated_root, tmp_path / "two", "train=false", f"ckpt_path={ckpt}", "trainer=ddp_cpu"
    )
    assert "distributed_backend=gloo" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert one.keys() == two.keys()
    for name, value in one.items():
        assert two[name] == pytest.approx(value, abs=1e-6), name
