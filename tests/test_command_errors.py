"""The commands on bad input, run as the user runs them: an unwritable run directory and a data
error end in one line naming the file (``HYDRA_FULL_ERROR=1`` keeps the traceback), a failed
run's log and report say why, and ``wsl.evaluate`` never pairs labels with the wrong outputs
when a data set lists the checkpoint's classes in another order."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support import FAST, command, compose_cfg, one_error_line
from wsl.train import train

RUN_DIR_ERROR = "cannot write to the run directory"


@pytest.mark.parametrize(
    ("module", "overrides"),
    [("wsl.train", []),  # the others share RunDirCheck (conf/hydra/default.yaml): slow
     pytest.param("wsl.evaluate", ["ckpt_path=x.ckpt"], marks=pytest.mark.slow),
     pytest.param("wsl.predict", ["ckpt_path=x.ckpt", "input=x.jpg"], marks=pytest.mark.slow)],
)  # fmt: skip
def test_unwritable_run_dir_is_one_line(module: str, overrides: list[str], tmp_path: Path) -> None:
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the run directory's parent should be\n")
    run_dir = blocker / "run"
    result = command(module, *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {RUN_DIR_ERROR} {run_dir} ({blocker} is a file, not a folder); choose a "
        "writable one with hydra.run.dir=DIR (or paths.log_dir=DIR)\n"
    )
    assert blocker.read_text().startswith("a file")


def test_unwritable_default_run_dir_is_one_line(tmp_path: Path) -> None:
    # The default run dir names the experiment (${hydra:runtime.choices.experiment}).
    blocker = tmp_path / "outputs"
    blocker.write_text("")
    result = command("wsl.train", "experiment=localizer_demo", f"paths.log_dir={blocker}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{RUN_DIR_ERROR} {blocker}/runs/train/localizer_demo/" in result.stderr


def test_unwritable_sweep_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "outputs"
    blocker.write_text("")
    result = command("wsl.train", "-m", f"paths.log_dir={blocker}", "seed=1,2")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"{RUN_DIR_ERROR} {blocker}/multiruns/train/" in result.stderr
    assert f"({blocker} is a file, not a folder)" in result.stderr


def test_data_error_is_one_line_and_the_run_says_why(data_copy: Path, tmp_path: Path) -> None:
    missing = data_copy / "VOCdevkit" / "VOC2007" / "Annotations" / "000003.xml"
    missing.unlink()
    run = tmp_path / "run"
    result = command("wsl.train", f"data.root={data_copy}", f"hydra.run.dir={run}")
    line = one_error_line(result)
    why = f"{missing}: annotation file does not exist"
    assert line.endswith(why)
    assert why in (run / "train.log").read_text()
    assert f'<p class="failed">The run failed: {why}</p>' in (run / "report.html").read_text()
    # HYDRA_FULL_ERROR=1 shows the traceback, as for any other error.
    full = command("wsl.train", f"data.root={data_copy}", f"hydra.run.dir={tmp_path / 'full'}",
                   env={**os.environ, "HYDRA_FULL_ERROR": "1"})  # fmt: skip
    assert full.returncode == 1
    assert "Traceback" in full.stderr and f"DataError: {why}" in full.stderr


@pytest.fixture(scope="module")
def tested_run(
    localizer_ckpt: Path, generated_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The session's Localizer checkpoint tested by ``wsl.train train=false``: a run directory
    with its checkpoint and the test's metrics.json."""
    run = tmp_path_factory.mktemp("tested") / "train"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(localizer_ckpt, run / "checkpoints" / "last.ckpt")
    overrides = ["experiment=localizer_demo", f"data.root={generated_root}", *FAST,
                 f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "train=false"]  # fmt: skip
    train(compose_cfg("train", overrides, run))
    return run


def reorder_classes(generated_root: Path, root: Path, classes: list[str]) -> Path:
    """A copy of the generated set whose ``classes.txt`` lists ``classes``."""
    shutil.copytree(generated_root, root)
    listed = root / "VOCdevkit" / "VOC2007" / "classes.txt"
    listed.write_text("\n".join(classes) + "\n")
    return listed


def test_evaluate_matches_classes_by_name(
    tested_run: Path, generated_root: Path, tmp_path: Path
) -> None:
    listed = reorder_classes(generated_root, tmp_path / "data", ["square", "circle", "triangle",
                                                                 "cross"])  # fmt: skip
    out = tmp_path / "evaluated"
    result = command(
        "wsl.evaluate", f"ckpt_path={tested_run / 'checkpoints' / 'last.ckpt'}",
        f"data.root={tmp_path / 'data'}", "logger=[]", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = f"{listed} lists the checkpoint's classes in another order; labels are matched"
    assert warning in result.stdout
    console = result.stdout + result.stderr  # evaluate's console is as quiet as train's
    assert "💡 Tip" not in console and "LeafSpec" not in console
    trained = json.loads((tested_run / "metrics.json").read_text())
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["metrics"] == pytest.approx(trained["metrics"], abs=1e-6)
    for name, values in trained["per_class"].items():  # per class name, not per position
        assert evaluated["per_class"][name] == pytest.approx(values, abs=1e-6)


def test_evaluate_refuses_other_classes(
    tested_run: Path, generated_root: Path, tmp_path: Path
) -> None:
    listed = reorder_classes(generated_root, tmp_path / "data", ["circle", "square", "star"])
    result = command(
        "wsl.evaluate", f"ckpt_path={tested_run / 'checkpoints' / 'last.ckpt'}",
        f"data.root={tmp_path / 'data'}", "logger=[]", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    line = one_error_line(result)
    assert line.endswith(
        f"{listed}: the data's classes ({listed}) are not those of the checkpoint "
        f"{tested_run / 'checkpoints' / 'last.ckpt'}: missing ['triangle', 'cross']; "
        "not in the checkpoint ['star']"
    )
