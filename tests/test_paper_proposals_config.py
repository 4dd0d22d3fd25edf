"""The paper configs read WSDDN's EdgeBoxes with scores; selective search is one override away."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import scipy.io

from tests.support import compose_cfg

SELECTIVE_SEARCH = ["data/proposals=mat", "model.net.use_proposal_scores=false"]


def write_edgeboxes(root: Path) -> None:
    """EdgeBoxes-style files (boxes, boxScores, string ids) from the generated proposals."""
    (root / "edgeboxes").mkdir()
    for split in ("trainval", "test"):
        content = scipy.io.loadmat(root / "selective_search_data" / f"voc_2007_{split}.mat")
        boxes = content["boxes"].reshape(1, -1)
        scores = np.empty_like(boxes)
        for j, cell in enumerate(boxes.ravel()):
            scores[0, j] = np.linspace(0.5, 0.25, len(cell)).reshape(-1, 1)
        images = content["images"].reshape(1, -1)
        scipy.io.savemat(
            root / "edgeboxes" / f"EdgeBoxesVOC2007{split}.mat",
            {"boxes": boxes, "boxScores": scores, "images": images},
        )


@pytest.mark.parametrize("experiment", ["wsddn_paper", "wsddn_vgg16"])
def test_paper_configs_use_edgeboxes_with_scores(
    experiment: str, data_copy: Path, tmp_path: Path
) -> None:
    write_edgeboxes(data_copy)
    cfg = compose_cfg("train", [f"experiment={experiment}", f"data.root={data_copy}"], tmp_path)
    assert cfg.model.net.use_proposal_scores is True
    edgeboxes = str(data_copy / "edgeboxes" / "EdgeBoxesVOC2007{}.mat")
    assert hydra.utils.instantiate(cfg.data.proposals).files == {
        "train": edgeboxes.format("trainval"),
        "val": edgeboxes.format("trainval"),
        "trainval": edgeboxes.format("trainval"),
        "test": edgeboxes.format("test"),
    }
    assert dict(cfg.data.proposal_filter) == {
        "min_size": 21, "remove_duplicates": True, "max_per_image": None, "dedup_scale": None,
    }  # fmt: skip
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    record = datamodule.dataset("test").index.records[0]
    scores = record.proposals.scores
    assert scores is not None and scores.min() >= 0.25 and scores.max() <= 0.5
    widths = record.proposals.boxes[:, 2] - record.proposals.boxes[:, 0] + 1
    assert widths.min() >= 21


def test_selective_search_override_gives_the_ablation_row(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["experiment=wsddn_paper", *SELECTIVE_SEARCH], tmp_path)
    assert cfg.model.net.use_proposal_scores is False
    root = cfg.data.root
    files = hydra.utils.instantiate(cfg.data.proposals).files
    assert files["train"] == f"{root}/selective_search_data/voc_2007_trainval.mat"
    assert files["test"] == f"{root}/selective_search_data/voc_2007_test.mat"
