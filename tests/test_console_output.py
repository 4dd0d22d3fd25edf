"""What a user reads: ``python -m wsl.train`` with its output in a file (not a terminal) prints
progress lines and the final per-class table, and none of the libraries' noise; runs are
named by experiment; a run keeps exactly the checkpoints the README lists."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks.progress.progress_bar import get_standard_metrics

from tests.support import CONF_DIR, compose_cfg
from wsl.callbacks.progress_log import ProgressLog
from wsl.callbacks.result_files import results_table
from wsl.runtime.console import quiet_console
from wsl.runtime.instantiate import instantiate_all
from wsl.train import train

NOISE = ("💡 Tip", "LeafSpec", "v_num", "Directory watcher", "No path found after")


@pytest.fixture(scope="module")
def localizer_console(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two short Localizer epochs, stdout and stderr to one file."""
    log_dir = tmp_path_factory.mktemp("console")
    output = log_dir / "console.txt"
    with output.open("w") as file:
        result = subprocess.run(
            [sys.executable, "-m", "wsl.train", "experiment=localizer_demo",
             f"data.root={generated_root}", f"paths.log_dir={log_dir}", "data.num_workers=0",
             "trainer.max_epochs=2", "callbacks.progress_log.every_n_steps=1",
             "callbacks.heatmaps.num_train_images=0", "callbacks.heatmaps.num_final_images=0",
             "logger=tensorboard"],
            cwd=CONF_DIR.parent, stdout=file, stderr=subprocess.STDOUT, timeout=300,
        )  # fmt: skip
    text = output.read_text()
    assert result.returncode == 0, text[-3000:]
    (run_dir,) = (log_dir / "runs" / "train" / "localizer_demo").iterdir()
    return {"text": text, "run_dir": run_dir}


def test_run_directory_and_report_title_name_the_experiment(localizer_console: dict) -> None:
    run_dir = localizer_console["run_dir"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", run_dir.name)
    title = re.search(r"<title>(.*?)</title>", (run_dir / "report.html").read_text()).group(1)
    assert title == f"train · localizer_demo · {run_dir.name}"


def test_progress_lines_without_a_terminal(localizer_console: dict) -> None:
    """Every step (two batches per epoch on 24 trainval images) and both epoch ends, in the
    console and in train.log alike."""
    text, log_text = localizer_console["text"], (localizer_console["run_dir"] / "train.log")
    log_text = log_text.read_text()
    pattern = re.compile(r"epoch (\d)/2 step (\d)/4 · \d:\d\d:\d\d elapsed(?: · ETA \S+)? \| (.*)")
    lines = [m.groups() for m in pattern.finditer(text)]
    positions = [(epoch, step) for epoch, step, _ in lines]
    assert positions == [("1", "1"), ("1", "2"), ("1", "2"), ("2", "3"), ("2", "4"), ("2", "4")]
    assert lines[0][2].startswith("train/loss ")
    epoch_end = lines[2][2]
    assert epoch_end.startswith("end of epoch | ") and "val/loss" in epoch_end
    assert "val/cls_mAP" in epoch_end and "train/loss_epoch" not in epoch_end
    assert "train/cls_mAP" in epoch_end  # logged by the module after the callbacks' epoch end
    assert "ETA 0:00:00" in text  # the last line: nothing left
    for groups in lines:
        assert groups[2] in log_text


def test_final_table_and_no_noise(localizer_console: dict) -> None:
    text = localizer_console["text"]
    table = text[text.index("per-class results on 'test':") :]
    assert re.search(r"\nclass +\| cls_AP +\| det_AP +\| CorLoc +\| pointing\n", table)
    for name in ("circle", "square", "triangle", "cross"):
        assert re.search(rf"\n{name} +\| \d\.\d{{4}} \|", table)
    assert re.search(r"final metrics: cls_mAP \d\.\d{4} · ", table)
    assert text.count("final metrics") == 1  # once, rounded (not again as a raw dict)
    assert "Test metric" not in text  # Lightning's own table would repeat ours
    for noise in NOISE:
        assert noise not in text
    assert "it/s" not in text  # no progress bar when the output is a file


def test_results_table_by_hand() -> None:
    table = results_table(
        {"det_mAP": 0.5, "CorLoc": float("nan")},
        {"det_AP": {"cat": 0.25, "dog": 0.75}, "CorLoc": {"cat": 1.0}},
        "test",
    )
    assert table.splitlines() == [
        "per-class results on 'test':",
        "class | det_AP | CorLoc",
        "------+--------+-------",
        "cat   | 0.2500 | 1.0000",
        "dog   | 0.7500 | -",
        "final metrics: det_mAP 0.5000 · CorLoc -",
    ]


def test_progress_log_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="every_n_steps=0 must be at least 1"):
        ProgressLog(every_n_steps=0)


def checkpoints_after(root: Path, run_dir: Path, *overrides: str) -> list[str]:
    """Train briefly (with TensorBoard, where Lightning's default checkpoint would go);
    return every ``.ckpt`` file in the run directory."""
    common = [
        f"data.root={root}", "data.num_workers=0", "trainer.enable_progress_bar=false",
        "logger=tensorboard", "test=false",
    ]  # fmt: skip
    train(compose_cfg("train", [*common, *overrides], run_dir))
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.ckpt"))


def test_wsddn_demo_keeps_only_last_ckpt(generated_root: Path, tmp_path: Path) -> None:
    """README, Run directories: wsddn_demo keeps checkpoints/last.ckpt only; Lightning adds
    no checkpoint of its own (tensorboard/checkpoints/)."""
    found = checkpoints_after(
        generated_root, tmp_path, "experiment=wsddn_demo", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
        "~callbacks.histograms", "~callbacks.periodic_evaluation", "~callbacks.box_pictures",
    )  # fmt: skip
    assert found == ["checkpoints/last.ckpt"]


def test_localizer_demo_keeps_last_and_newest_epoch(generated_root: Path, tmp_path: Path) -> None:
    """README, Run directories: last.ckpt and the newest epoch_NNN.ckpt, nothing else."""
    found = checkpoints_after(
        generated_root, tmp_path, "experiment=localizer_demo", "trainer.max_epochs=2",
        "callbacks.heatmaps.num_train_images=0", "callbacks.heatmaps.num_final_images=0",
    )  # fmt: skip
    assert found == ["checkpoints/epoch_001.ckpt", "checkpoints/last.ckpt"]


def test_no_version_number_in_the_progress_bar() -> None:
    """The default loggers (TensorBoard + visdom) give Lightning no version to show
    ("v_num: None" before)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=unused"])
    trainer = Trainer(logger=instantiate_all(cfg.logger), enable_checkpointing=False)
    assert get_standard_metrics(trainer) == {}


@pytest.mark.parametrize("override", ["trainer.max_steps=7", "trainer.max_time=00:00:01:00"])
def test_step_and_time_limits_need_no_plus(override: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[override])
    key, value = override.split("=")
    assert str(OmegaConf.select(cfg, key)) == value


def test_help_starts_with_the_projects_own() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsl.train", "--help"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("wsl: weakly supervised object localization")
    assert text.index("python -m wsl.predict ckpt_path=") < text.index("== Configuration groups ==")
    # Hydra's list follows, one line per group
    [experiments] = [line for line in text.splitlines() if line.startswith("experiment: ")]
    assert {"localizer", "localizer_demo", "fast_rcnn_demo"} <= set(experiments[12:].split(", "))


def test_make_help_shows_values() -> None:
    result = subprocess.run(
        ["make", "-s", "help", "TB_PORT=7007", "VISDOM_HOST=0.0.0.0"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "$(" not in result.stdout
    assert "serve TensorBoard over outputs/ at http://127.0.0.1:7007" in result.stdout
    assert "visdom server at http://0.0.0.0:8097" in result.stdout
    assert re.search(r"\n  TB_PORT += 7007\n", result.stdout)


def test_tips_dropped_and_warnings_as_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings(), caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        quiet_console()
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info("💡 Tip: install more")
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info("GPU available: False")
        warnings.warn("visdom went away", UserWarning, stacklevel=1)
    assert caplog.messages[0] == "GPU available: False"
    assert re.fullmatch(
        r"UserWarning: visdom went away \(test_console_output\.py:\d+\)", caplog.messages[1]
    )
    assert len(caplog.messages) == 2
