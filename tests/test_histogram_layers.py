"""The layers ``callbacks.histograms.layers`` names exist in the models they are used with, and
an unknown one stops a run at fit start with one line naming the key, the name and valid names.

Every experiment of conf/experiment/ is composed and its model built (``model.net.weights=none``:
no download), as ``python -m wsl.train experiment=<x>`` would build it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tests.support import CONF_DIR, ROOT
from wsl.callbacks.histograms import resolve_layers
from wsl.runtime.settings import SettingError

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
CLASSES = ["cat", "dog", "car"]


def _experiment(name: str):
    """The composed train config of ``experiment=name`` and its LightningModule (None when the
    experiment chooses no model, as voc2007: data only)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"])
        if OmegaConf.select(cfg, "model.net") is None:
            return cfg, None
        cfg = compose("train", overrides=[f"experiment={name}", "model.net.weights=none"])
    return cfg, hydra.utils.instantiate(cfg.model, class_names=CLASSES)


def _composed(name: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}"])


COMPOSED = {name: _composed(name) for name in EXPERIMENTS}


def _net_and_layers(cfg: DictConfig) -> str:
    """The network and the histogram layers of a composed config, as text to compare."""
    return OmegaConf.to_yaml({
        "net": OmegaConf.select(cfg, "model.net"),
        "layers": OmegaConf.select(cfg, "callbacks.histograms.layers"),
    })  # fmt: skip


# The Localizer's experiments and voc2007 (data only) log none: the test below checks which
# families are covered. Experiments of the same network and layers (oicr_vgg16 and
# oicr_voc2012: only their data differ) are checked once.
WITH_HISTOGRAMS = list({
    _net_and_layers(cfg): name
    for name, cfg in reversed(COMPOSED.items())
    if OmegaConf.select(cfg, "callbacks.histograms.layers") is not None
}.values())[::-1]  # fmt: skip


@pytest.mark.parametrize("name", WITH_HISTOGRAMS)
def test_the_histogram_layers_of_every_experiment_exist(name: str) -> None:
    cfg, module = _experiment(name)
    layers = OmegaConf.select(cfg, "callbacks.histograms.layers")
    assert module is not None
    tracked = resolve_layers(module, list(layers))
    assert {key.rsplit(".", 1)[0] for key in tracked} == set(layers)


def test_every_family_that_logs_histograms_is_checked() -> None:
    # The Localizer's callbacks (conf/callbacks/localizer.yaml) log heatmaps, not histograms.
    families = {}
    for name, cfg in COMPOSED.items():
        if OmegaConf.select(cfg, "callbacks.histograms.layers") is not None:
            net = cfg.model.net  # WSDDN, with a refinement head (OICR, PCL, MIST), a detector
            head = OmegaConf.select(net, "refinement", default=None)
            families[name] = net._target_ if head is None else head.get("method", head._target_)
    assert {"wsddn_demo", "oicr_demo", "pcl_demo", "mist_demo", "wsddn_vgg16"} <= set(families)
    assert set(families.values()) == {
        "wsl.models.wsddn.WSDDN", "oicr", "pcl", "wsl.models.mist.MISTHeads",
        "wsl.models.supervised.SupervisedDetector",
    }  # fmt: skip


@pytest.mark.parametrize("model", ["fast_rcnn", "faster_rcnn"])
def test_the_histogram_layers_of_wsl_retrains_default_exist(model: str) -> None:
    overrides = ["ckpt_path=weak.ckpt", f"model={model}", "model.net.weights=none"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("retrain", overrides=overrides)
    module = hydra.utils.instantiate(cfg.model, class_names=CLASSES)
    layers = list(cfg.callbacks.histograms.layers)
    assert {key.rsplit(".", 1)[0] for key in resolve_layers(module, layers)} == set(layers)


def test_an_unknown_layer_names_the_key_and_close_valid_names() -> None:
    module = _experiment("wsddn_demo")[1]
    with pytest.raises(SettingError) as error:
        resolve_layers(module, ["net.features.0", "net.fc77"])
    message = str(error.value)
    assert message.startswith("callbacks.histograms.layers: WSLModule has no layer 'net.fc77'")
    assert "'net.fc7'" in message and "'net.fc6'" in message
    with pytest.raises(SettingError, match=r"'net.features.1' \(ReLU\) has no parameters.*"):
        resolve_layers(module, ["net.features.1"])


def test_a_run_with_an_unknown_layer_ends_in_one_line(generated_root: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsl.train", "experiment=wsddn_demo", f"data.root={generated_root}",
         "callbacks.histograms.layers=[net.fc77]", "logger=none", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "callbacks.histograms.layers: WSLModule has no layer 'net.fc77'; close valid" in output
    assert "Traceback" not in output
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # before the first step
