"""What a stored config may hold (wsl.runtime.stored_config): every config wsl composes passes,
and each of Hydra's ways of calling code is refused by key, at any depth."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from tests.support import CONF_DIR, compose_cfg, gadget
from wsl.runtime.stored_config import TARGETS, UntrustedConfigError, check_stored_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").iterdir())
PROPOSALS = ["mat", "edgeboxes", "selective_search"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_composed_experiment_passes(experiment: str, tmp_path: Path) -> None:
    """The contract: a config wsl.train stores (resolved, as RunConfigInCheckpoint keeps it)
    names only allow-listed classes where they stand; a new YAML naming a class fails here
    until the class is added to TARGETS."""
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    check_stored_config(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("proposals", PROPOSALS)
def test_every_proposal_source_passes(proposals: str, tmp_path: Path) -> None:
    overrides = ["experiment=wsddn_demo", f"data/proposals={proposals}"]
    cfg = compose_cfg("train", overrides, tmp_path)
    check_stored_config(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("experiment", ["localizer_demo", "wsddn_demo"])
def test_a_debug_run_passes(experiment: str, tmp_path: Path) -> None:
    """conf/debug/fast.yaml switches callbacks off with null, in families that lack them too."""
    cfg = compose_cfg("train", [f"experiment={experiment}", "debug=fast"], tmp_path)
    check_stored_config(OmegaConf.to_container(cfg, resolve=True))


def test_the_gadget_is_real(tmp_path: Path) -> None:
    """What the checks refuse would run: instantiated, the gadget writes its file."""
    marker = tmp_path / "pwned"
    hydra.utils.instantiate(gadget(marker))
    assert marker.read_text() == "pwned"


def base_config() -> dict:
    return {
        "model": {
            "_target_": "wsl.training.module.WSLModule",
            "_recursive_": False,
            "_convert_": "all",
            "net": {
                "_target_": "wsl.models.localizer.LocalizerAlexNet",
                "pooling": "max",
                "heatmap_boxes": {"thresholds": [0.3, 0.5]},
            },
            "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.01},
        },
        "data": {"_target_": "wsl.data.datamodule.VOCImageLabelsDataModule", "root": "/d"},
        "trainer": {"_target_": "pytorch_lightning.Trainer", "max_epochs": 1},
        "callbacks": {"last": {"_target_": "wsl.callbacks.last_checkpoint.LastCheckpoint"}},
    }


def test_a_clean_config_passes() -> None:
    check_stored_config(base_config())


@pytest.mark.parametrize(
    ("place", "value", "key", "problem"),
    [
        # a call nested under a value, in each section, at several depths
        (["model", "net", "weights"], "G", "model.net.weights._args_", "call syntax"),
        (["model", "net", "heatmap_boxes", "thresholds", 1], "G",
         "model.net.heatmap_boxes.thresholds[1]._args_", "call syntax"),
        (["data", "train_transform"], {"scales": ["G"]}, "data.train_transform.scales[0]._args_",
         "call syntax"),
        (["trainer", "plugins"], ["G"], "trainer.plugins[0]._args_", "call syntax"),
        (["callbacks", "last", "dirpath"], "G", "callbacks.last.dirpath._args_", "call syntax"),
        # a target without _args_, where wsl builds nothing
        (["model", "net", "weights"], {"_target_": "builtins.open", "file": "x", "mode": "w"},
         "model.net.weights._target_", "where wsl's configs build nothing"),
        # an allowed place naming another class
        (["model", "_target_"], "setuptools._distutils.spawn.spawn", "model._target_",
         "not one of the classes wsl builds at model"),
        (["data", "_target_"], "shutil.copyfile", "data._target_", "not one of the classes"),
        (["trainer", "_target_"], "builtins.getattr", "trainer._target_", "not one of"),
        (["callbacks", "last", "_target_"], "wsl.data.generate.generate_voc",
         "callbacks.last._target_", "not one of the classes"),
        # an allowed class, but called with positional arguments or as a partial
        (["model", "optimizer", "_partial_"], True, "model.optimizer._partial_", "call syntax"),
        (["model", "net", "_args_"], [1], "model.net._args_", "call syntax"),
        # Hydra's options where no _target_ stands, or with values wsl never writes
        (["model", "net", "heatmap_boxes", "_recursive_"], True,
         "model.net.heatmap_boxes._recursive_", "not a value wsl writes"),
        (["model", "_convert_"], "everything", "model._convert_", "not a value wsl writes"),
        # interpolations: wsl stores configs resolved
        (["data", "root"], "${oc.env:HOME}", "data.root", "holds the interpolation"),
    ],
)  # fmt: skip
def test_each_way_to_call_code_is_refused_by_key(
    place: list, value: object, key: str, problem: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"

    def plant(value: object) -> object:
        if value == "G":
            return gadget(marker)
        if isinstance(value, dict):
            return {k: plant(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plant(v) for v in value]
        return value

    config = base_config()
    node = config
    for part in place[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[place[-1]] = plant(value)
    with pytest.raises(UntrustedConfigError) as error:
        check_stored_config(config)
    assert error.value.key == key
    assert problem in str(error.value)
    assert not marker.exists()


def test_every_place_names_only_classes() -> None:
    """The allow-list names classes by module path (no callables such as LambdaLR)."""
    for place, targets in TARGETS.items():
        for target in targets:
            assert isinstance(hydra.utils.get_class(target), type), (place, target)
    assert "torch.optim.lr_scheduler.LambdaLR" not in TARGETS["model.scheduler"]
