"""A checkpoint runs no code: crafted checkpoints whose stored config calls code (at several
depths, in the model, data and trainer sections) are refused in one line naming the file and
the key by every path that reads one (wsl.load, wsl.evaluate, wsl.predict, wsl.train resume and
train=false), nothing they name runs, and a clean checkpoint still loads."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import wsl
from tests.support import FAST_RESUMABLE, compose_cfg, gadget
from wsl.checkpoint import CheckpointError, RunCheckpoint, RunCheckpointIO
from wsl.evaluate import evaluate
from wsl.predict import predict
from wsl.train import train


def plant_in_model(config: dict, marker: Path) -> str:
    config["model"]["net"]["weights"] = gadget(marker)  # depth 2
    return "model.net.weights._args_"


def plant_in_data(config: dict, marker: Path) -> str:
    config["data"]["train_transform"]["scales"] = [gadget(marker)]  # depth 3, in a list
    return "data.train_transform.scales[0]._args_"


def plant_in_trainer(config: dict, marker: Path) -> str:
    config["trainer"]["_target_"] = "setuptools._distutils.spawn.spawn"
    config["trainer"]["cmd"] = ["touch", str(marker)]
    return "trainer._target_"


def plant_in_proposals(config: dict, marker: Path) -> str:
    config["data"]["proposals"] = {
        "_target_": "wsl.data.selective_search.SelectiveSearchProposals",  # allowed itself
        "cache_dir": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
    }
    return "data.proposals.cache_dir._target_"


PLANTS = [plant_in_model, plant_in_data, plant_in_trainer, plant_in_proposals]


def crafted(clean: Path, path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of checkpoint ``clean`` at ``path`` with ``change`` applied to its contents."""
    checkpoint = copy.deepcopy(torch.load(clean, map_location="cpu", weights_only=True))
    change(checkpoint)
    torch.save(checkpoint, path)
    return path


def evil(clean: Path, tmp_path: Path, plant: Callable) -> tuple[Path, Path, str]:
    """A checkpoint whose stored config would write ``marker``; and the refused key."""
    marker, found = tmp_path / "pwned", {}
    path = crafted(
        clean,
        tmp_path / "evil.ckpt",
        lambda c: found.setdefault("key", plant(c["wsl_config"], marker)),
    )
    return path, marker, found["key"]


@pytest.mark.parametrize("plant", PLANTS, ids=lambda p: p.__name__)
def test_api_and_resume_loading_refuse_by_key(
    localizer_ckpt: Path, tmp_path: Path, plant: Callable
) -> None:
    path, marker, key = evil(localizer_ckpt, tmp_path, plant)
    for read in (wsl.load, RunCheckpoint.read, RunCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointError) as error:
            read(path)
        message = str(error.value)
        assert message.startswith(f"{path}: its stored config is refused, nothing was built")
        assert f" {key}: " in message and "\n" not in message
    assert not marker.exists()


def test_evaluate_refuses(localizer_ckpt: Path, tmp_path: Path) -> None:
    """(The one-line ending of a CheckpointError in wsl.evaluate: test_checkpoint_files.py.)"""
    path, marker, key = evil(localizer_ckpt, tmp_path, plant_in_data)
    cfg = compose_cfg("evaluate", [f"ckpt_path={path}"], tmp_path / "run")
    with pytest.raises(CheckpointError, match=re.escape(key)):
        evaluate(cfg)
    assert not marker.exists()


def test_predict_refuses(localizer_ckpt: Path, generated_root: Path, tmp_path: Path) -> None:
    path, marker, key = evil(localizer_ckpt, tmp_path, plant_in_model)
    image = generated_root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    cfg = compose_cfg("predict", [f"ckpt_path={path}", f"input={image}"], tmp_path / "out")
    with pytest.raises(CheckpointError, match=re.escape(key)):
        predict(cfg)
    assert not marker.exists()


@pytest.mark.parametrize("train_too", [True, False], ids=["resume", "train=false"])
def test_train_with_ckpt_path_refuses(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path, train_too: bool
) -> None:
    path, marker, key = evil(localizer_ckpt, tmp_path, plant_in_trainer)
    overrides = ["experiment=localizer_demo", f"data.root={generated_root}", *FAST_RESUMABLE,
                 f"ckpt_path={path}", f"train={train_too}"]  # fmt: skip
    with pytest.raises(CheckpointError, match=key):
        train(compose_cfg("train", overrides, tmp_path / "run"))
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any work


def test_a_clean_checkpoint_still_loads(localizer_ckpt: Path, generated_root: Path) -> None:
    checkpoint = RunCheckpoint.read(localizer_ckpt)
    assert checkpoint.family == "LocalizerAlexNet"
    module = checkpoint.build_module()
    stored = torch.load(localizer_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for key, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, stored[key])
    image = generated_root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    [found] = wsl.load(localizer_ckpt, device="cpu").detect(image)
    assert len(found.boxes) > 0


def test_class_names_that_are_not_plain_are_refused(localizer_ckpt: Path, tmp_path: Path) -> None:
    def rename(checkpoint: dict) -> None:
        checkpoint["hyper_parameters"]["class_names"][0] = "../../../../victim"

    path = crafted(localizer_ckpt, tmp_path / "names.ckpt", rename)
    with pytest.raises(CheckpointError, match=r"class name '\.\./\.\./\.\./\.\./victim' is not"):
        wsl.load(path)


def test_callback_state_naming_files_elsewhere_is_refused(
    localizer_ckpt: Path, tmp_path: Path
) -> None:
    """Lightning deletes a ModelCheckpoint state's old best file as a resumed run goes on
    (it checks the folder with unnormalised paths): a state naming a file elsewhere is refused."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = tmp_path / "run" / "checkpoints"

    def point_outside(checkpoint: dict) -> None:
        checkpoint["callbacks"]["ModelCheckpoint{'monitor': None}"] = {
            "dirpath": str(folder),
            "best_model_path": f"{folder}/../../victim.txt",
            "best_k_models": {},
        }

    path = crafted(localizer_ckpt, tmp_path / "state.ckpt", point_outside)
    with pytest.raises(CheckpointError, match="outside its checkpoint folder"):
        RunCheckpointIO().load_checkpoint(path)
    inside = crafted(
        localizer_ckpt,
        tmp_path / "fine.ckpt",
        lambda c: c["callbacks"].update(
            {"ModelCheckpoint{}": {"dirpath": str(folder), "best_model_path": f"{folder}/a.ckpt"}}
        ),
    )
    RunCheckpointIO().load_checkpoint(inside)
    assert victim.read_text() == "keep me"


def test_a_url_is_not_loaded(tmp_path: Path) -> None:
    """Lightning alone would fetch a URL and unpickle it unsafely (weights_only=False)."""
    with pytest.raises(CheckpointError) as error:
        RunCheckpointIO().load_checkpoint("https://example.org/evil.ckpt")
    assert str(error.value) == (
        "https://example.org/evil.ckpt: is a URL: wsl reads local checkpoint files only "
        "(download it first)"
    )
