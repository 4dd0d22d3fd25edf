"""``wsl.train ckpt_path=...`` on a config that does not fit the checkpoint says what differs in
one line before any work (not Lightning's ``KeyError: 'step'`` or a size-mismatch traceback),
and ``train=false`` on data listing the classes in another order matches them by name, as
``wsl.evaluate`` does, so the metrics are those of the original order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import CLASSES, FAST, FAST_RESUMABLE, compose_cfg
from wsl.checkpoint import CheckpointError
from wsl.data.bad_input import DataError
from wsl.train import train


def run(root: Path, run_dir: Path, *extra: str) -> dict:
    overrides = ["experiment=localizer_demo", f"data.root={root}", *FAST_RESUMABLE, *extra]
    return train(compose_cfg("train", overrides, run_dir))


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("model.optimizer._target_=torch.optim.Adam",
         "trained with the optimizer torch.optim.SGD, but the config chooses torch.optim.Adam"),
        ("model.scheduler=null",
         "trained with the scheduler torch.optim.lr_scheduler.StepLR, but the config chooses None"),
        ("model.bias_weight_decay=false",
         "its optimizer has 1 parameter groups, the model chosen makes 2"),
    ],
)  # fmt: skip
def test_resuming_with_another_optimizer_says_what_differs(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path, override: str, said: str
) -> None:
    with pytest.raises(CheckpointError) as error:
        run(generated_root, tmp_path / "run", f"ckpt_path={localizer_ckpt}", override)
    assert str(error.value).startswith(f"{localizer_ckpt}: {said}")


def test_another_family_is_named(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path
) -> None:
    overrides = ["experiment=wsddn_demo", f"data.root={generated_root}", *FAST,
                 f"ckpt_path={localizer_ckpt}", "train=false"]  # fmt: skip
    with pytest.raises(CheckpointError) as error:
        train(compose_cfg("train", overrides, tmp_path / "run"))
    assert str(error.value).startswith(
        f"{localizer_ckpt}: a LocalizerAlexNet checkpoint, but the model chosen is a WSDDN"
    )


def reordered(generated_root: Path, root: Path, classes: list[str]) -> Path:
    shutil.copytree(generated_root, root)
    (root / "VOCdevkit" / "VOC2007" / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_other_classes_are_one_line(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path
) -> None:
    root = reordered(generated_root, tmp_path / "data", ["circle", "square", "triangle", "star"])
    with pytest.raises(DataError, match=r"missing \['cross'\]; not in the checkpoint \['star'\]"):
        run(root, tmp_path / "run", f"ckpt_path={localizer_ckpt}")


def test_test_only_matches_reordered_classes_by_name(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path
) -> None:
    """Without matching, each label would be scored against another class's output."""
    as_trained = run(generated_root, tmp_path / "a", f"ckpt_path={localizer_ckpt}", "train=false",
                     "test=true")  # fmt: skip
    root = reordered(generated_root, tmp_path / "data", ["square", "circle", "cross", "triangle"])
    matched = run(root, tmp_path / "b", f"ckpt_path={localizer_ckpt}", "train=false", "test=true")
    assert matched == pytest.approx(as_trained, nan_ok=True)
    per_class = json.loads((tmp_path / "b" / "metrics.json").read_text())["per_class"]["cls_AP"]
    assert list(per_class) == CLASSES  # reported in the checkpoint's order
