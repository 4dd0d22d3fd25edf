"""Proposals as OICR's and PCL's code keeps them: deduplicated at 1/8 of the resized training
image (``DEDUP_BOXES``), no cap, the authors' minimum size; evaluation keeps every proposal."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from tests.support import compose_cfg
from wsl.data.proposal_filter import ProposalFilter
from wsl.structures.boxes import unique_at_scale


def test_boxes_that_round_alike_at_one_eighth_keep_the_first() -> None:
    boxes = torch.tensor([
        [0.0, 0.0, 15.0, 15.0],   # x 1/8: 0 0 1.875 1.875 -> 0 0 2 2
        [3.0, 3.0, 12.0, 19.0],   # 0.375 0.375 1.5 2.375 -> 0 0 2 2 (1.5 to even: 2)
        [4.0, 0.0, 15.0, 15.0],   # 0.5 -> 0 (half to even): 0 0 2 2
        [12.0, 0.0, 15.0, 15.0],  # 1.5 -> 2: 2 0 2 2, new
        [20.0, 0.0, 31.0, 15.0],  # 2.5 -> 2, 3.875 -> 4: 2 0 4 2, new
        [0.0, 0.0, 15.0, 15.0],   # an exact repeat of the first
        [17.0, 0.0, 30.0, 16.0],  # 2.125 -> 2, 3.75 -> 4, 2: 2 0 4 2, as the fifth
    ])  # fmt: skip
    assert unique_at_scale(boxes, 1 / 8).tolist() == [0, 3, 4]  # half up would keep 2 and 6
    assert unique_at_scale(boxes, 1.0).tolist() == [0, 1, 2, 3, 4, 6]  # exact repeats only
    assert unique_at_scale(boxes[:0], 1 / 8).tolist() == []


def test_dedup_scale_is_checked() -> None:
    with pytest.raises(ValueError, match="dedup_scale=0 must be positive or null"):
        ProposalFilter(dedup_scale=0)


@pytest.mark.parametrize(
    ("experiment", "min_size"),
    [("oicr", 0), ("oicr_vgg16", 0), ("pcl", 3), ("pcl_vgg16", 3)],  # Caffe: none; pcl.pytorch: > 2
)
def test_the_paper_experiments_keep_proposals_as_the_authors(
    experiment: str, min_size: int, tmp_path: Path
) -> None:
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    kept = cfg.data.proposal_filter
    assert (kept.min_size, kept.max_per_image, kept.dedup_scale) == (min_size, None, 0.125)
    assert kept.remove_duplicates  # pcl.pytorch unique_boxes; implied by 1/8 for Caffe's rois


def test_wsddn_keeps_its_proposal_filter(tmp_path: Path) -> None:
    kept = compose_cfg("train", ["experiment=wsddn"], tmp_path).data.proposal_filter
    assert (kept.min_size, kept.max_per_image, kept.dedup_scale) == (20, 2000, None)


def test_training_images_lose_their_duplicates_at_the_input_scale(
    generated_root: Path, tmp_path: Path
) -> None:
    """The train set drops, after resizing, what rounds alike at 1/8; the eval set keeps all."""
    overrides = [
        "experiment=wsddn_demo", f"data.root={generated_root}", "data.num_workers=0",
        "data.train_transform.flip=false", "data.train_transform.scales=[96]",
        "data.eval_transform.scales=[96]", "data.proposal_filter.max_per_image=null",
    ]  # fmt: skip
    plain = hydra.utils.instantiate(compose_cfg("train", overrides, tmp_path).data)
    dedup = hydra.utils.instantiate(
        compose_cfg("train", [*overrides, "data.proposal_filter.dedup_scale=0.125"], tmp_path).data
    )
    dropped = 0
    for i in range(4):
        every = plain.dataset("trainval", train=True)[i]["proposals"]
        kept = dedup.dataset("trainval", train=True)[i]["proposals"]
        expected = every[unique_at_scale(every, 0.125)]
        assert torch.equal(kept, expected)
        dropped += len(every) - len(kept)
        evaluated = dedup.dataset("trainval")[i]["proposals"]
        assert torch.equal(evaluated, plain.dataset("trainval")[i]["proposals"])
    assert dropped > 0  # at 96 pixels many of the 60 proposals share their 1/8 cells
