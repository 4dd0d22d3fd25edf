"""One visdom env per run, named after its run directory, against a real visdom server."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import hydra
import pytest
from visdom import Visdom

from tests.support import compose_cfg
from wsl.loggers.visdom_logger import VisdomLogger, run_env_name


@pytest.mark.parametrize(
    ("run_dir", "expected"),
    [("outputs/runs/train/wsddn_demo/2026-12-01_08-43", "runs_train_wsddn_demo_2026-12-01_08-43"),
     ("outputs/multiruns/train/2026-12-01_08-43-33/3", "multiruns_train_2026-12-01_08-43-33_3"),
     ("outputs/runs/my run?#%/x", "runs_my-run---_x"),
     ("elsewhere/2026-12-01_08-43-33", "2026-12-01_08-43-33")],
)  # fmt: skip
def test_run_env_name_is_the_run_directory_below_log_dir(
    run_dir: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_env_name(tmp_path / run_dir, "./outputs") == expected  # absolute vs relative
    assert run_env_name(run_dir, tmp_path / "outputs") == expected


def test_a_given_env_with_characters_visdom_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match=r"visdom env 'a/b c'.*letters, digits"):
        VisdomLogger(env="a/b c")
    assert VisdomLogger(env="fixed_name-1.2").env == "fixed_name-1.2"
    assert VisdomLogger().env == "wsl"


def test_the_logger_config_names_the_env_after_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "outputs/runs/train/2026-12-01_08-43-33"
    cfg = compose_cfg("train", [f"paths.log_dir={tmp_path}/outputs"], run_dir)
    logger = hydra.utils.instantiate(cfg.logger.visdom)
    assert logger.env == "runs_train_2026-12-01_08-43-33"


def test_two_runs_keep_their_own_windows_and_say_where(
    visdom_server: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, port = visdom_server
    loggers = [
        VisdomLogger(server, port, run_dir=tmp_path / f"outputs/runs/train/{time}",
                     log_dir=tmp_path / "outputs")
        for time in ("2026-12-01_08-00-00", "2026-12-01_09-00-00")
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="wsl.loggers.visdom_logger"):
        for value, logger in enumerate(loggers):
            logger.log_metrics({"train/loss": float(value)}, step=1)
    reader = Visdom(server=server, port=port, use_incoming_socket=False, raise_exceptions=True)
    for value, logger in enumerate(loggers):
        [line] = json.loads(reader.get_window_data("train/loss", env=logger.env))["content"]["data"]
        assert line["y"] == [value]  # each run's window holds its own point only
        url = f"{server}:{port}/env/{logger.env}"
        assert f"visdom: logging to {url}" in caplog.messages
        with urllib.request.urlopen(url, timeout=10) as page:  # the address it names answers
            assert page.status == 200
