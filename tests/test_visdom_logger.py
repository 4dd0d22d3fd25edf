"""VisdomLogger against a real visdom server: what it draws is read back from the server."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from PIL import Image
from pytorch_lightning.utilities import rank_zero_only
from visdom import Visdom

from tests.visdom_server import HOST, free_port, serve_visdom
from wsl.loggers.visdom_logger import VisdomLogger


@pytest.fixture(scope="module")
def reader(visdom_server: tuple[str, int]) -> Visdom:
    """An independent client that reads windows back from the server."""
    server, port = visdom_server
    return Visdom(server=server, port=port, use_incoming_socket=False, raise_exceptions=True)


@pytest.fixture
def logger(visdom_server: tuple[str, int], request: pytest.FixtureRequest) -> VisdomLogger:
    """A logger writing to an env of its own, named after the test."""
    server, port = visdom_server
    return VisdomLogger(server=server, port=port, env=request.node.name)


def window(reader: Visdom, logger: VisdomLogger, win: str) -> dict[str, Any]:
    """The JSON the server holds for window ``win`` of the logger's env."""
    assert reader.win_exists(win, env=logger.env), f"no window {win!r} in env {logger.env!r}"
    return json.loads(reader.get_window_data(win, env=logger.env))


def png_pixels(win_data: dict[str, Any]) -> np.ndarray:
    """Decode an image window's PNG to an RGB HWC uint8 array."""
    src = win_data["content"]["src"]
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :]))) as png:
        return np.asarray(png.convert("RGB"))


def test_metrics_append_one_line_plot_per_name(reader: Visdom, logger: VisdomLogger) -> None:
    logger.log_metrics({"train/loss": 1.5, "val/mAP": 0.25}, step=0)
    logger.log_metrics({"train/loss": 0.75}, step=50)
    logger.log_metrics({"train/loss": 0.5}, step=100)
    loss = window(reader, logger, "train/loss")
    assert loss["title"] == "train/loss"
    [trace] = loss["content"]["data"]
    assert trace["x"] == [0, 50, 100]
    assert trace["y"] == [1.5, 0.75, 0.5]
    [map_trace] = window(reader, logger, "val/mAP")["content"]["data"]
    assert (map_trace["x"], map_trace["y"]) == ([0], [0.25])


def test_hyperparams_text_holds_flattened_config(reader: Visdom, logger: VisdomLogger) -> None:
    config = OmegaConf.create({"model": {"lr": 0.0123, "name": "<wsddn>"}, "seed": 7})
    logger.log_hyperparams(config)
    content = window(reader, logger, "hparams")["content"]
    assert "model/lr: 0.0123" in content
    assert "model/name: &lt;wsddn&gt;" in content  # escaped: visdom renders text as HTML
    assert "seed: 7" in content


def test_image_chw_float_tensor_and_hwc_uint8_array(reader: Visdom, logger: VisdomLogger) -> None:
    chw = torch.zeros(3, 4, 5)
    chw[0] = 1.0  # red
    chw[2, 1, 2] = 0.5
    logger.log_image("heatmap", chw, step=3, caption="dog")
    data = window(reader, logger, "heatmap")
    assert data["title"] == "heatmap"
    assert data["content"]["caption"] == "dog — step 3"
    pixels = png_pixels(data)
    assert pixels.shape == (4, 5, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[1, 2].tolist() == [255, 0, 128]

    hwc = np.full((6, 2, 3), 7, dtype=np.uint8)
    logger.log_image("heatmap", hwc)  # same tag: replaces the picture
    assert np.array_equal(png_pixels(window(reader, logger, "heatmap")), hwc)


def test_image_with_unknown_layout_is_refused(logger: VisdomLogger) -> None:
    with pytest.raises(ValueError, match=r"\(2, 5, 5\)"):
        logger.log_image("bad", np.zeros((2, 5, 5), dtype=np.uint8))


def test_figure_is_drawn_as_pixels(reader: Visdom, logger: VisdomLogger) -> None:
    figure = Figure(figsize=(2, 1), dpi=50, facecolor=(0.0, 0.0, 1.0))
    logger.log_figure("ap_curve", figure, step=1)
    pixels = png_pixels(window(reader, logger, "ap_curve"))
    assert pixels.shape == (50, 100, 3)
    assert pixels[25, 50].tolist() == [0, 0, 255]


def test_bar_holds_values_and_labels(reader: Visdom, logger: VisdomLogger) -> None:
    logger.log_bar("test/AP", np.array([0.5, 0.125, 1e-4]), ["cat", "dog", "person"])
    [trace] = window(reader, logger, "test/AP")["content"]["data"]
    assert trace["x"] == ["cat", "dog", "person"]
    assert trace["y"] == [0.5, 0.125, 1e-4]
    with pytest.raises(ValueError, match="2 values but 3 labels"):
        logger.log_bar("test/AP", [0.5, 0.1], ["cat", "dog", "person"])
    with pytest.warns(UserWarning, match="single bar"):
        logger.log_bar("one/AP", [0.5], ["cat"])
    assert reader.win_exists("one/AP", env=logger.env) is False


def test_finalize_writes_the_env_once(logger: VisdomLogger, visdom_env_dir: Path) -> None:
    saved = visdom_env_dir / f"{logger.env}.json"
    logger.finalize("success")  # not connected yet: nothing to save
    assert not saved.exists()
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()  # called by Lightning after every log: writes nothing
    assert not saved.exists()
    logger.finalize("success")
    assert "train/loss" in json.loads(saved.read_text())["jsons"]


def test_other_ranks_draw_nothing(
    reader: Visdom, logger: VisdomLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    assert not isinstance(logger.experiment, Visdom)
    assert reader.win_exists("train/loss", env=logger.env) is False


def test_unreachable_server_warns_once_and_turns_calls_into_no_ops() -> None:
    port = free_port()  # nothing listens there
    logger = VisdomLogger(server=f"http://{HOST}", port=port)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.log_hyperparams({"lr": 0.1})
        logger.log_image("image", np.zeros((3, 2, 2), dtype=np.uint8))
        logger.log_figure("figure", Figure(figsize=(1, 1), dpi=10))
        logger.log_bar("ap", [0.1, 0.2], ["a", "b"])
        logger.save()
    assert time.monotonic() - start < 3.0
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1, messages
    assert f"{HOST}:{port}" in messages[0]
    assert "without visdom" in messages[0]
    assert logger.experiment is None


def test_unreachable_server_raises_when_offline_is_not_ok() -> None:
    logger = VisdomLogger(server=f"http://{HOST}", port=free_port(), offline_ok=False)
    with pytest.raises(ConnectionError, match="unreachable"):
        logger.log_metrics({"train/loss": 1.0}, step=0)


def test_server_lost_mid_run_warns_once(tmp_path: Path) -> None:
    with serve_visdom(tmp_path) as (server, port):
        logger = VisdomLogger(server=server, port=port)
        logger.log_metrics({"train/loss": 1.0}, step=0)
        assert isinstance(logger.experiment, Visdom)
        # no websocket thread that would keep reconnecting to a lost server
        assert not [t for t in threading.enumerate() if t.name == "Visdom-Socket-Thread"]
    with pytest.warns(UserWarning, match="without visdom") as caught:
        logger.log_metrics({"train/loss": 0.5}, step=1)
        logger.log_metrics({"train/loss": 0.25}, step=2)
    assert len(caught) == 1
    assert logger.experiment is None
