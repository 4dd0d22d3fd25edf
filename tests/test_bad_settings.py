"""Settings out of range are one line naming the key and the range, before any work; an
out-of-range ``wsl.inspect index`` is one line without a traceback; a class no training image
is positive for is named in one warning."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import CONF_DIR, compose_cfg
from wsl.data.datamodule import VOCImageLabelsDataModule
from wsl.runtime.settings import SettingError
from wsl.train import train


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.optimizer.lr=-0.01",
         "model.optimizer.lr=-0.01 is not allowed: it must be a number > 0"),
        ("data.num_workers=-1",
         "data.num_workers=-1 is not allowed: it must be an integer >= 0 (0: no workers)"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: it must be an integer >= 1"),
        ("model.optimizer.momentum=1.5",
         "model.optimizer.momentum=1.5 is not allowed: it must be a number in [0, 1)"),
        ("data.batch_size=2.5", "data.batch_size=2.5 is not allowed: it must be an integer >= 1"),
    ],
)  # fmt: skip
def test_out_of_range_settings_stop_before_any_work(
    override: str, message: str, tmp_path: Path
) -> None:
    """The data root does not even exist: the check comes before anything is read."""
    cfg = compose_cfg(
        "train",
        ["experiment=localizer_demo", f"data.root={tmp_path / 'nowhere'}", override],
        tmp_path / "run",
    )
    with pytest.raises(SettingError) as error:
        train(cfg)
    assert str(error.value) == message
    assert not (tmp_path / "run").exists()


def test_inspect_index_out_of_range_is_one_line(generated_root: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsl.inspect", f"data.root={generated_root}", "index=9999",
         "logger=none", f"hydra.run.dir={tmp_path}"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert errors[0].endswith(
        "index=9999 is out of range: split 'trainval' of "
        f"{generated_root / 'VOCdevkit' / 'VOC2007'} has 24 images (0..23)"
    )


def test_a_class_without_positive_images_is_named_once(
    data_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    classes = data_copy / "VOCdevkit" / "VOC2007" / "classes.txt"
    classes.write_text(classes.read_text() + "star\n")  # no XML holds a star
    datamodule = VOCImageLabelsDataModule(str(data_copy), verify_images="none")
    with caplog.at_level(logging.WARNING, logger="wsl.data.datamodule"):
        datamodule.setup("fit")
    warnings = [r.getMessage() for r in caplog.records if "positive" in r.getMessage()]
    assert warnings == [
        f"{data_copy / 'VOCdevkit' / 'VOC2007'}: no image of training split 'trainval' is "
        "positive for star: the model cannot learn it (check the class list and the labels)"
    ]
