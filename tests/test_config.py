"""The Hydra config tree composes, every documented setting is an override, and the
entry points run on generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from tests.support import CONF_DIR, command, compose_cfg
from wsl.inspect import inspect
from wsl.runtime.run_dir import RunDirError
from wsl.train import train


def test_root_config_has_every_group() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    for group in (
        "data",
        "model",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "hydra",
        "experiment",
        "debug",
    ):
        assert group in choices, group


@pytest.mark.parametrize("experiment", ["localizer_demo", "wsddn_demo"])
def test_debug_fast_makes_a_quick_run_and_overrides_still_win(
    experiment: str, tmp_path: Path
) -> None:
    """conf/debug/fast.yaml comes after the experiment: its settings win over the experiment's,
    and the command line's over both."""
    cfg = compose_cfg("train", [f"experiment={experiment}", "debug=fast"], tmp_path)
    assert cfg.data.num_workers == 0 and cfg.trainer.max_epochs == 1
    assert cfg.trainer.enable_progress_bar is False and not cfg.get("logger")
    switched_off = ("model_checkpoint", "heatmaps", "box_pictures", "histograms")
    assert all(cfg.callbacks[name] is None for name in (*switched_off, "periodic_evaluation"))
    assert cfg.callbacks.last_checkpoint._target_.endswith("LastCheckpoint")  # last.ckpt stays
    overridden = compose_cfg(
        "train",
        [f"experiment={experiment}", "debug=fast", "trainer.max_epochs=2", "logger=tensorboard"],
        tmp_path,
    )
    assert overridden.trainer.max_epochs == 2 and list(overridden.logger) == ["tensorboard"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.root=/elsewhere", "/elsewhere"),
        ("data.train_split=train", "train"),
        ("data.val_split=val", "val"),
        ("data.test_split=trainval", "trainval"),
        ("data.train_transform.scales=[480,576]", [480, 576]),
        ("data.batch_size=7", 7),
        ("data.num_workers=3", 3),
        ("data.difficult_labels=ignore", "ignore"),
        ("data.on_error=skip", "skip"),
        ("data.proposals.test_mat=/x/test.mat", "/x/test.mat"),
        ("data.proposals.box_layout=xyxy", "xyxy"),
        ("data.proposal_filter.max_per_image=123", 123),
        ("trainer.max_epochs=3", 3),
    ],
)
def test_documented_settings_are_overrides(override: str, expected: object, tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["data=voc_proposals", override], tmp_path)
    value = OmegaConf.select(cfg, override.split("=")[0])
    assert (OmegaConf.to_object(value) if OmegaConf.is_config(value) else value) == expected


@pytest.mark.parametrize(
    ("override", "choice"), [("data=nope", "voc_proposals"), ("experiment=nope", "voc2007")]
)
def test_unknown_choice_lists_the_valid_ones(override: str, choice: str) -> None:
    with (
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"),
        pytest.raises(MissingConfigException) as caught,
    ):
        compose("train", overrides=[override])
    assert "Available options" in str(caught.value) and choice in str(caught.value)


def test_train_without_a_model_checks_the_data(generated_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "train",
        [
            f"data.root={generated_root}",
            "data.train_split=train",
            "data.val_split=val",
            "logger=none",
        ],
        tmp_path,
    )
    counts = train(cfg)
    assert counts == {"images/fit": 12, "images/validate": 12, "images/test": 12}


def test_inspect_prints_classes_and_writes_pictures(
    generated_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"data.root={generated_root}", "index=2", "data.proposal_filter.min_size=4"]
    cfg = compose_cfg("inspect", [*overrides, "~logger.visdom"], tmp_path)
    written = inspect(cfg)
    out = capsys.readouterr().out
    xml = (generated_root / "VOCdevkit/VOC2007/Annotations").glob("*.xml")
    assert "[trainval #2]" in out and ".jpg:" in out
    assert set(written) == {"gt_boxes", "proposals"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in written.values())
    assert list(xml)


def test_cli_entry_point_fails_clearly_on_a_bad_choice() -> None:
    result = command("wsl.train", "data=nope")
    assert result.returncode != 0
    assert "Available options in 'data'" in result.stderr and "voc_labels" in result.stderr


def test_unwritable_run_directory_fails_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = compose_cfg("train", ["experiment=localizer_demo", "data.root=/does/not/exist"], tmp_path)
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(RunDirError, match=r"cannot write to the run directory .*a_file/run"):
        train(cfg)  # before the (missing) data is even looked at
