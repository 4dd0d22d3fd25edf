"""Proposal files on generated data: read once per process, whole-file errors, per-image skips."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.support import compose_cfg
from wsl.data.annotations import read_image_set
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCProposalsDataModule
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.proposals import MatProposalFiles, MatProposals
from wsl.data.voc import VOCIndex
from wsl.train import train

VOC = Path("VOCdevkit/VOC2007")
SMALL = ProposalFilter(min_size=4)


def trainval_mat(root: Path) -> Path:
    return root / "selective_search_data" / "voc_2007_trainval.mat"


def rewrite(path: Path, keep: list[int] | None = None, ids: bool = True, **extra: object) -> None:
    """Save ``path`` again with the entries ``keep`` (in that order), with or without ids."""
    content = scipy.io.loadmat(path)
    keep = list(range(content["boxes"].size)) if keep is None else keep
    boxes = content["boxes"].ravel()[keep].reshape(1, -1)
    out: dict[str, object] = {"boxes": boxes, **extra}
    if ids:
        out["images"] = content["images"].ravel()[keep].reshape(-1, 1)
    scipy.io.savemat(path, out)


def index(root: Path, on_error: str, box_layout: str = "yxyx") -> VOCIndex:
    provider = MatProposals(str(trainval_mat(root)), box_layout=box_layout, on_error=on_error)
    return VOCIndex(root, "trainval", proposals=provider, proposal_filter=SMALL, on_error=on_error)


def datamodule(root: Path, on_error: str = "raise") -> VOCProposalsDataModule:
    mat = str(trainval_mat(root))
    return VOCProposalsDataModule(
        root=str(root),
        train_split="train",
        val_split="val",
        on_error=on_error,
        batch_size=2,
        proposals=MatProposalFiles(mat, mat.replace("trainval", "test"), on_error=on_error),
        proposal_filter={"min_size": 4},
    )


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files ``scipy.io.loadmat`` really reads (it still reads them)."""
    calls: list[str] = []
    real = scipy.io.loadmat

    def counting(path: object, *args: object, **kwargs: object) -> dict:
        calls.append(Path(str(path)).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scipy.io, "loadmat", counting)
    return calls


def test_train_and_val_from_one_file_read_it_once(data_copy: Path, loads: list[str]) -> None:
    module = datamodule(data_copy)
    module.setup("fit")
    assert len(module.dataset("train", train=True)) + len(module.dataset("val")) == 24
    assert loads == ["voc_2007_trainval.mat"]
    module.setup("test")
    assert loads == ["voc_2007_trainval.mat", "voc_2007_test.mat"]
    datamodule(data_copy).setup("fit")  # a second datamodule in the process: still cached
    assert loads == ["voc_2007_trainval.mat", "voc_2007_test.mat"]


def test_a_replaced_file_is_read_again(data_copy: Path, loads: list[str]) -> None:
    mat = trainval_mat(data_copy)
    first = index(data_copy, "raise")
    rewrite(mat, keep=list(range(24))[::-1])  # same content in another order (ids kept)
    os.utime(mat, ns=(1, 1))  # and an mtime that cannot equal the first one's
    loads.clear()
    second = index(data_copy, "raise")
    assert loads == ["voc_2007_trainval.mat"]
    for a, b in zip(first.records, second.records, strict=True):
        np.testing.assert_array_equal(a.proposals.boxes, b.proposals.boxes)


def test_wrong_box_layout_stops_the_run_even_with_skip(data_copy: Path) -> None:
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError) as caught:
            index(data_copy, on_error, box_layout="xyxy")
        message = str(caught.value)
        assert message.startswith(f"{trainval_mat(data_copy)}: ")
        assert "of 24 images have proposals outside the image" in message
        assert "box_layout='xyxy'" in message


def test_file_without_ids_in_another_order_stops_the_run_even_with_skip(data_copy: Path) -> None:
    rewrite(trainval_mat(data_copy), keep=list(np.roll(np.arange(24), 1)), ids=False)
    with pytest.raises(DataError, match=r"voc_2007_trainval\.mat: \d+ of 24 images have"):
        index(data_copy, "skip")


def test_a_few_images_with_outside_boxes_are_per_image_problems(data_copy: Path) -> None:
    mat = trainval_mat(data_copy)
    content = scipy.io.loadmat(mat)
    first = read_image_set(data_copy / VOC, "trainval")[0]
    content["boxes"][0, 0] = content["boxes"][0, 0] * 50  # 1 of 24 images: not the file's
    scipy.io.savemat(mat, {"boxes": content["boxes"], "images": content["images"]})
    with pytest.raises(DataError, match=rf"voc_2007_trainval\.mat\[{first}\]: proposal 0"):
        index(data_copy, "raise")
    skipped = index(data_copy, "skip")
    assert skipped.policy.skip_count == 1 and first not in {r.image_id for r in skipped}


def test_images_missing_from_the_file_are_skipped_exactly_or_named(
    data_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = read_image_set(data_copy / VOC, "trainval")
    rewrite(trainval_mat(data_copy), keep=[i for i in range(24) if i not in (3, 17)])
    with pytest.raises(DataError) as caught:
        index(data_copy, "raise")
    assert str(caught.value) == (
        f"{trainval_mat(data_copy)}: has no proposals for 2 of 24 images of the image set: "
        f"{[ids[3], ids[17]]}; use the file made for this split"
    )
    with caplog.at_level(logging.WARNING):
        skipped = index(data_copy, "skip")
    assert [r.image_id for r in skipped] == [i for k, i in enumerate(ids) if k not in (3, 17)]
    assert [e.problem for e in skipped.policy.skipped] == [
        f"has no proposals for image {ids[3]}",
        f"has no proposals for image {ids[17]}",
    ]
    assert "skipped 2 of 24 images of split 'trainval'" in caplog.text


def test_a_file_lacking_many_images_stops_the_run_even_with_skip(data_copy: Path) -> None:
    rewrite(trainval_mat(data_copy), keep=list(range(21)))  # 3 of 24 missing: 12.5%
    with pytest.raises(DataError, match=r"3 of 24 images .* more than 10% is a wrong file"):
        index(data_copy, "skip")


def test_non_finite_box_scores_are_caught_at_setup(data_copy: Path) -> None:
    mat = trainval_mat(data_copy)
    content = scipy.io.loadmat(mat)
    scores = np.empty_like(content["boxes"])
    for j, boxes in enumerate(content["boxes"].ravel()):
        scores[0, j] = np.linspace(1, 0, len(boxes)).reshape(-1, 1)
    scores[0, 5][7, 0] = np.nan
    scores[0, 9][0, 0] = np.inf
    scipy.io.savemat(mat, {**{k: content[k] for k in ("boxes", "images")}, "boxScores": scores})
    ids = read_image_set(data_copy / VOC, "trainval")
    named = (
        rf"trainval\.mat\[({ids[5]}\]: boxScores of proposal 7 is nan"
        rf"|{ids[9]}\]: boxScores of proposal 0 is inf), not a finite"
    )
    with pytest.raises(DataError, match=named):
        datamodule(data_copy).setup("fit")
    module = datamodule(data_copy, on_error="skip")
    module.setup("fit")
    kept = {r.image_id for r in module.dataset("train", train=True).index.records}
    kept |= {r.image_id for r in module.dataset("val").index.records}
    assert kept == set(ids) - {ids[5], ids[9]}


def data_check(root: Path, tmp_path: Path, *overrides: str) -> dict:
    """``python -m wsl.train data=voc_proposals data.root=ROOT ...`` without a model."""
    cfg = compose_cfg(
        "train",
        ["data=voc_proposals", f"data.root={root}", "data.proposal_filter.min_size=4", *overrides],
        tmp_path / "run",
    )
    return train(cfg)


def test_the_train_command_stops_on_a_file_error_and_skips_image_errors(
    data_copy: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"voc_2007_trainval\.mat: \d+ of 24 images have"):
        data_check(data_copy, tmp_path, "data.on_error=skip", "data.proposals.box_layout=xyxy")
    rewrite(trainval_mat(data_copy), keep=list(range(1, 24)))
    with pytest.raises(DataError, match=r"voc_2007_trainval\.mat: has no proposals for 1 of"):
        data_check(data_copy, tmp_path)
    counts = data_check(data_copy, tmp_path, "data.on_error=skip")
    assert counts == {"images/fit": 23, "images/validate": 12, "images/test": 12}
