"""Proposal sources come from the config (``data/proposals=...``, ``_target_``), in training
and in ``wsl.predict``: a new method is a class and a YAML."""

from __future__ import annotations

from pathlib import Path

import cv2
import hydra
import numpy as np
import pytest

from tests.support import compose_cfg
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCProposalsDataModule
from wsl.data.proposal_mat import load_proposal_mat
from wsl.data.proposals import MatProposalFiles, MatProposals
from wsl.data.selective_search import SelectiveSearchProposals
from wsl.predict import search_proposals
from wsl.structures.proposals import Proposals


class CornerProposals:
    """A proposal method written for this test: per image, the four quarter boxes of a
    ``size`` x ``size`` square at the top left, whatever the split."""

    def __init__(self, size: int) -> None:
        self.size = size

    def for_split(self, split: str) -> CornerProposals:
        return self

    def load(self, image_ids: list[str], image_paths: list[Path]) -> dict[str, Proposals]:
        h = self.size // 2
        corners = [(0, 0), (h, 0), (0, h), (h, h)]
        boxes = np.array([[x, y, x + h - 1, y + h - 1] for x, y in corners], np.float32)
        return {image_id: Proposals(boxes) for image_id in image_ids}

    def source(self, image_id: str, image_path: Path) -> str:
        return f"corners of {image_path}"


def test_config_group_choices_build_each_provider(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["data=voc_proposals", "data.root=/d"], tmp_path)
    files = hydra.utils.instantiate(cfg.data.proposals)
    assert isinstance(files, MatProposalFiles)
    trainval = "/d/selective_search_data/voc_2007_trainval.mat"
    assert files.files == {
        "train": trainval, "val": trainval, "trainval": trainval,
        "test": "/d/selective_search_data/voc_2007_test.mat",
    }  # fmt: skip
    assert files.for_split("val").path == Path(trainval)

    cfg = compose_cfg(
        "train",
        ["data=voc_proposals", "data/proposals=selective_search", "data.proposals.mode=quality"],
        tmp_path,
    )
    search = hydra.utils.instantiate(cfg.data.proposals)
    assert isinstance(search, SelectiveSearchProposals) and search.mode == "quality"
    assert search.for_split("test") is search

    cfg = compose_cfg(
        "train",
        ["experiment=wsddn", "data.on_error=skip", "+data.proposals.mat_files.val=/v.mat"],
        tmp_path,
    )
    files = hydra.utils.instantiate(cfg.data.proposals)
    val = files.for_split("val")
    assert (val.path, val.on_error) == (Path("/v.mat"), "skip")  # data.on_error reaches it
    with pytest.raises(ValueError, match=r"split 'extra'.*\+data\.proposals\.mat_files\.extra="):
        files.for_split("extra")


def test_the_datamodule_takes_any_proposal_method(generated_root: Path) -> None:
    datamodule = VOCProposalsDataModule(
        root=str(generated_root),
        proposals=CornerProposals(size=40),
        proposal_filter={"min_size": 20, "max_per_image": 3},
    )
    datamodule.setup("test")
    records = datamodule.dataset("test").index.records
    assert len(records) == 12
    for record in records:  # the filter keeps the first three of the four 20x20 quarters
        assert record.proposals.boxes.tolist() == [[0, 0, 19, 19], [20, 0, 39, 19], [0, 20, 19, 39]]


def test_a_config_without_target_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"data\.proposals must be a proposal method.*_target_"):
        VOCProposalsDataModule(root="/d", proposals={"source": "mat"})


def test_selective_search_choice_trains_on_computed_proposals(
    generated_root: Path, tmp_path: Path
) -> None:
    overrides = [
        "experiment=wsddn_demo", f"data.root={generated_root}", "data/proposals=selective_search",
        f"data.proposals.cache_dir={tmp_path / 'cache'}", "data.proposals.workers=1",
        "data.proposals.progress=false",
    ]  # fmt: skip
    datamodule = hydra.utils.instantiate(compose_cfg("train", overrides, tmp_path).data)
    datamodule.setup("test")
    [record, *_] = datamodule.dataset("test").index.records
    computed = SelectiveSearchProposals(workers=1, progress=False).load_paths([record.image_path])
    assert record.proposals.scores is None
    assert {tuple(b) for b in record.proposals.boxes.tolist()} <= {
        tuple(b) for b in computed[0].boxes.tolist()
    }
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 12  # every test image, cached


def test_predict_asks_the_configured_provider_with_file_stems_as_ids(generated_root: Path) -> None:
    mat = generated_root / "selective_search_data" / "voc_2007_test.mat"
    images = sorted((generated_root / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))
    content = load_proposal_mat(mat)
    in_file = [path for path in images if path.stem in content.image_ids][:2]
    found, errors = search_proposals(MatProposals(str(mat)), in_file)
    assert not errors
    for path in in_file:
        expected = content.proposals[content.image_ids.index(path.stem)]
        np.testing.assert_array_equal(found[path].boxes, expected.boxes)
    # an image the file lacks: the file's own error (no image to blame), raised as it is
    not_in_file = next(path for path in images if path.stem not in content.image_ids)
    with pytest.raises(DataError, match=str(mat)):
        search_proposals(MatProposals(str(mat)), [not_in_file])


def test_predict_reports_each_image_the_provider_cannot_serve(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:30, 20:50] = 255
    cv2.imwrite(str(good), image)
    found, errors = search_proposals(
        SelectiveSearchProposals(workers=1, progress=False), [bad, good]
    )
    assert list(found) == [good] and list(errors) == [bad]
    assert "OpenCV cannot decode it" in str(errors[bad])
