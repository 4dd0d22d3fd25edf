"""The VOC data layer end to end on generated data: index, bad input, datasets, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from tests.support import proposals_config
from wsl.data.annotations import read_image_set
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCImageLabelsDataModule, VOCProposalsDataModule
from wsl.data.dataset import VOCDataset
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.proposals import MatProposals
from wsl.data.transforms import build_transform
from wsl.data.voc import VOCIndex

VOC = Path("VOCdevkit/VOC2007")


def mat_proposals(root: Path, split: str = "trainval") -> MatProposals:
    return MatProposals(str(root / "selective_search_data" / f"voc_2007_{split}.mat"))


def test_index_reads_every_image_of_the_split_once(generated_root: Path) -> None:
    index = VOCIndex(
        generated_root,
        "trainval",
        proposals=mat_proposals(generated_root),
        proposal_filter=ProposalFilter(min_size=4),
    )
    ids = read_image_set(generated_root / VOC, "trainval")
    assert [r.image_id for r in index.records] == ids
    classes = (generated_root / VOC / "classes.txt").read_text().split()
    assert index.classes == tuple(classes)
    for record in index.records:
        names = {o.name for o in record.annotation.objects}
        assert {classes[i] for i in np.flatnonzero(record.labels)} == names
        boxes = record.proposals.boxes
        assert len(boxes) > 0
        assert (boxes[:, 2] <= record.annotation.width - 1).all()
        assert (boxes[:, 3] <= record.annotation.height - 1).all()


def damage(root: Path, what: str) -> Path:
    """Break one thing in a copy of the data set; return the file the error must name."""
    voc = root / VOC
    first = read_image_set(voc, "trainval")[0]
    image, xml = voc / "JPEGImages" / f"{first}.jpg", voc / "Annotations" / f"{first}.xml"
    if what == "missing image":
        image.unlink()
        return image
    if what == "missing xml":
        xml.unlink()
        return xml
    if what == "corrupt jpeg":
        image.write_bytes(b"this is not a jpeg")
        return image
    if what == "truncated jpeg":
        image.write_bytes(image.read_bytes()[:-300])
        return image
    if what == "unknown class":
        text = xml.read_text()
        name = text.split("<name>")[1].split("</name>")[0]
        xml.write_text(text.replace(f"<name>{name}</name>", "<name>unicorn</name>", 1))
        return xml
    if what == "no size":
        text = xml.read_text()
        start, end = text.index("<size>"), text.index("</size>") + len("</size>")
        xml.write_text(text[:start] + text[end:])
        return xml
    if what == "box outside":
        text = xml.read_text()
        xmax = text.split("<xmax>")[1].split("</xmax>")[0]
        xml.write_text(text.replace(f"<xmax>{xmax}</xmax>", "<xmax>100000</xmax>", 1))
        return xml
    raise AssertionError(what)


BAD_INPUTS = [
    "missing image",
    "missing xml",
    "corrupt jpeg",
    "truncated jpeg",
    "unknown class",
    "no size",
    "box outside",
]


@pytest.mark.parametrize("what", BAD_INPUTS)
def test_bad_input_is_named_or_skipped_and_counted(data_copy: Path, what: str) -> None:
    culprit = damage(data_copy, what)
    with pytest.raises(DataError) as caught:
        VOCIndex(data_copy, "trainval")
    assert str(culprit) in str(caught.value)
    total = len(read_image_set(data_copy / VOC, "trainval"))
    index = VOCIndex(data_copy, "trainval", on_error="skip")
    assert index.policy.skip_count == 1 and len(index) == total - 1
    assert culprit.stem not in {r.image_id for r in index.records}


def test_proposal_file_of_the_wrong_length_is_named(data_copy: Path) -> None:
    mat = data_copy / "selective_search_data" / "voc_2007_trainval.mat"
    content = scipy.io.loadmat(mat)
    scipy.io.savemat(mat, {"boxes": content["boxes"][:, :-1]})  # no ids, one image short
    with pytest.raises(DataError, match=r"voc_2007_trainval\.mat"):
        VOCIndex(data_copy, "trainval", proposals=mat_proposals(data_copy))


def test_image_left_without_proposals_is_named_or_skipped(generated_root: Path) -> None:
    too_strict = ProposalFilter(min_size=10_000)
    with pytest.raises(DataError, match="proposals"):
        VOCIndex(
            generated_root,
            "test",
            proposals=mat_proposals(generated_root, "test"),
            proposal_filter=too_strict,
        )
    with pytest.raises(DataError, match="no usable image"):
        VOCIndex(
            generated_root,
            "test",
            proposals=mat_proposals(generated_root, "test"),
            proposal_filter=too_strict,
            on_error="skip",
        )


def test_dataset_flip_moves_proposals_and_gt_with_the_image(generated_root: Path) -> None:
    index = VOCIndex(generated_root, "test", proposals=mat_proposals(generated_root, "test"))
    record = index[0]
    width = record.annotation.width
    flip = build_transform(
        resize="shortest_side", scales=[record.annotation.height], max_size=10_000, flip=True
    )
    plain = VOCDataset(
        index,
        build_transform(resize="shortest_side", scales=[record.annotation.height], max_size=10_000),
        with_proposals=True,
    )
    flipped = VOCDataset(index, flip, with_proposals=True)
    torch.manual_seed(0)
    samples = [flipped[0] for _ in range(12)]
    mirrored = [s for s in samples if not torch.equal(s["gt_boxes"], plain[0]["gt_boxes"])]
    assert 0 < len(mirrored) < 12
    expected = plain[0]["proposals"].clone()
    expected[:, [0, 2]] = width - 1 - plain[0]["proposals"][:, [2, 0]]
    torch.testing.assert_close(mirrored[0]["proposals"], expected)
    torch.testing.assert_close(mirrored[0]["image"], plain[0]["image"].flip(-1))


def test_proposals_datamodule_batches_images_with_their_own_proposal_counts(
    generated_root: Path,
) -> None:
    dm = VOCProposalsDataModule(
        root=str(generated_root),
        train_split="train",
        val_split="val",
        test_split="test",
        batch_size=3,
        proposals=proposals_config(generated_root),
        proposal_filter={"min_size": 4, "max_per_image": 50},
        train_transform={
            "resize": "shortest_side",
            "scales": [96, 128],
            "max_size": 200,
            "flip": True,
        },
        eval_transform={"resize": "shortest_side", "scales": [128], "max_size": 200},
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    images = batch["image"]
    assert images.shape[0] == 3 and images.dtype == torch.float32
    for i in range(3):
        h, w = batch["input_size"][i]
        assert images.shape[2] >= h and images.shape[3] >= w
        boxes = batch["proposals"][i]
        assert boxes.shape[1] == 4 and 0 < len(boxes) <= 50
        assert (boxes[:, 2] <= w - 1 + 1e-3).all() and (boxes[:, 3] <= h - 1 + 1e-3).all()
        assert len(batch["gt_boxes"][i]) == len(batch["gt_classes"][i])
    assert batch["labels"].shape == (3, len(dm.class_names))
    dm.setup("test")
    test_batch = next(iter(dm.test_dataloader()))
    assert all(abs(min(size) - 128) <= 1 for size in test_batch["input_size"])  # int() rounding


def test_labels_datamodule_stacks_square_images(generated_root: Path) -> None:
    dm = VOCImageLabelsDataModule(
        root=str(generated_root),
        batch_size=4,
        train_transform={"resize": "square", "scales": [64], "flip": True},
        eval_transform={"resize": "square", "scales": [48]},
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64)
    assert batch["labels"].sum(1).min() >= 1  # every generated image has an object
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (48, 48)
