"""Two DDP processes on CPU (gloo) give the same test metrics as one process, also on a split
whose image count is odd (``DistributedSampler`` pads one image in twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wsl.data.generate import generate_voc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set of 9 trainval and 7 test images: odd counts for 2 processes."""
    root = tmp_path_factory.mktemp("odd")
    generate_voc(root, seed=2, image_size=64, num_trainval=9, num_test=7, proposals_per_image=12)
    return root


LOCALIZER = ("experiment=localizer_demo", "~callbacks.heatmaps")


def run_train(data_root: Path, run_dir: Path, *extra: str) -> tuple[dict[str, float], str]:
    command = [
        sys.executable, "-m", "wsl.train", f"data.root={data_root}",
        "data.batch_size=4", "data.num_workers=0", "data.train_transform.scales=[64]",
        "data.eval_transform.scales=[64]", "trainer.enable_progress_bar=false", "logger=none",
        f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (run_dir / "report.html").read_text()  # written at the end of every run
    assert "mAP" in report
    return json.loads((run_dir / "metrics.json").read_text())["metrics"], result.stderr


def test_two_gloo_processes_match_one_process(generated_root: Path, tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    run_train(generated_root, trained, *LOCALIZER, "trainer.max_epochs=2")
    ckpt = trained / "checkpoints" / "last.ckpt"
    test_only = (*LOCALIZER, "train=false", f"ckpt_path={ckpt}")
    one, _ = run_train(generated_root, tmp_path / "one", *test_only)
    two, log = run_train(generated_root, tmp_path / "two", *test_only, "trainer=ddp_cpu")
    assert "distributed_backend=gloo" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert one.keys() == two.keys()
    for name, value in one.items():
        assert two[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize(
    "common",
    [
        pytest.param(LOCALIZER, marks=pytest.mark.slow),  # 27 s; WSDDN's covers the gathering
        ("experiment=wsddn_demo", "callbacks=default", "data.test_split=trainval"),  # + CorLoc
    ],
)
def test_odd_split_two_processes_match_one_process(
    common: tuple[str, ...], odd_root: Path, tmp_path: Path
) -> None:
    test_only = (*common, "train=false")  # the seeded initial weights: the same in both runs
    one, _ = run_train(odd_root, tmp_path / "one", *test_only)
    two, log = run_train(odd_root, tmp_path / "two", *test_only, "trainer=ddp_cpu")
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert one.keys() == two.keys() and {"cls_mAP", "det_mAP", "CorLoc"} <= one.keys()
    for name, value in one.items():
        assert two[name] == pytest.approx(value, abs=1e-6), name
