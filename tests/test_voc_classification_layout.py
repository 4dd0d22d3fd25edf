"""VOC's classification layout (``ImageSets/Main/<class>_<split>.txt``) as the source of image
labels, with the XML files optional; VOC 07+12 style joined splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsl.data.bad_input import DataError
from wsl.data.labels import DIFFICULT_LABEL_CHOICES
from wsl.data.proposal_mat import write_proposal_mat
from wsl.data.proposals import MatProposalFiles
from wsl.data.voc import VOCIndex

VOC = Path("VOCdevkit") / "VOC2007"


@pytest.mark.parametrize("difficult_labels", DIFFICULT_LABEL_CHOICES)
def test_class_files_give_the_labels_the_xml_gives(
    generated_root: Path, difficult_labels: str
) -> None:
    from_xml = VOCIndex(generated_root, "trainval", difficult_labels=difficult_labels)
    from_sets = VOCIndex(
        generated_root, "trainval", difficult_labels=difficult_labels, labels_from="image_sets"
    )
    assert [r.image_id for r in from_sets] == [r.image_id for r in from_xml]
    for a, b in zip(from_xml, from_sets, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels, err_msg=a.image_id)
        np.testing.assert_array_equal(a.label_weights, b.label_weights, err_msg=a.image_id)
    assert from_sets.has_boxes  # the XML files are there: their boxes are used for evaluation
    assert from_sets[0].annotation.objects == from_xml[0].annotation.objects


def test_without_xml_the_labels_come_from_the_class_files(data_copy: Path) -> None:
    main = data_copy / VOC / "ImageSets" / "Main"
    (main / "circle_trainval.txt").write_text("000001 1\n000002 -1\n000003 0\n")
    for name in ("square", "triangle", "cross"):
        (main / f"{name}_trainval.txt").write_text("000001 -1\n000002 -1\n000003 1\n")
    (main / "trainval.txt").write_text("000001\n000002\n000003\n")
    shutil.rmtree(data_copy / VOC / "Annotations")
    index = VOCIndex(data_copy, "trainval", difficult_labels="ignore")
    assert not index.has_boxes
    assert [r.image_id for r in index] == ["000001", "000002", "000003"]
    np.testing.assert_array_equal(
        np.stack([r.labels for r in index]), [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]]
    )
    np.testing.assert_array_equal(index[2].label_weights, [0, 1, 1, 1])  # 0: only difficult
    width, height = index[0].annotation.width, index[0].annotation.height
    assert (width, height) == Image.open(index[0].image_path).size
    assert index[0].annotation.objects == ()


def test_bad_class_files_name_the_file_and_the_line(data_copy: Path) -> None:
    main = data_copy / VOC / "ImageSets" / "Main"
    shutil.rmtree(data_copy / VOC / "Annotations")
    lines = (main / "square_test.txt").read_text().splitlines()
    (main / "square_test.txt").write_text("\n".join([lines[0], lines[1].split()[0] + " 2"]))
    with pytest.raises(DataError, match=r"line 2: .* is not '<image id> <1, -1 or 0>'") as error:
        VOCIndex(data_copy, "test")
    assert error.value.path == main / "square_test.txt"
    (main / "square_test.txt").write_text("\n".join(lines[:-1]))  # one image left out
    with pytest.raises(DataError, match=r"lacks 1 image\(s\) of split 'test'"):
        VOCIndex(data_copy, "test")
    (main / "square_test.txt").unlink()
    with pytest.raises(DataError, match="the labels of class 'square' on split 'test'"):
        VOCIndex(data_copy, "test")


def test_joined_splits_read_both_devkit_folders(data_copy: Path) -> None:
    shutil.copytree(data_copy / VOC, data_copy / "VOCdevkit" / "VOC2012")
    with pytest.raises(DataError, match="is also in VOC2007/train: a joined split needs distinct"):
        VOCIndex(data_copy, "train+VOC2012/train")
    index = VOCIndex(data_copy, "VOC2007/train+VOC2007/val")
    assert len(index) == len(VOCIndex(data_copy, "trainval"))
    voc12 = VOCIndex(data_copy, "test", devkit="VOC2012")
    assert voc12.voc_dir == data_copy / "VOCdevkit" / "VOC2012"
    assert not voc12.has_boxes  # VOC 2012 test has no public annotations
    assert voc12.devkit_results == ("results/VOC2012/Main", "test")
    assert VOCIndex(data_copy, "VOC2012/val").has_boxes


def test_07_plus_12_reads_each_years_proposal_file(data_copy: Path) -> None:
    """A joined split takes each image's proposals from its own year's file."""
    voc07 = data_copy / VOC
    voc12 = data_copy / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc12 / sub).mkdir(parents=True)
    shutil.copyfile(voc07 / "classes.txt", voc12 / "classes.txt")
    source = VOCIndex(data_copy, "test")
    ids = [f"2012_{r.image_id}" for r in source][:3]
    boxes = {}
    for new_id, record in zip(ids, source, strict=False):
        shutil.copyfile(record.image_path, voc12 / "JPEGImages" / f"{new_id}.jpg")
        xml = (voc07 / "Annotations" / f"{record.image_id}.xml").read_text()
        (voc12 / "Annotations" / f"{new_id}.xml").write_text(
            xml.replace(f"{record.image_id}.jpg", f"{new_id}.jpg")
        )
        boxes[new_id] = np.array([[0.0, 0.0, 20.0, 30.0], [1.0, 2.0, 25.0, 26.0]])
    (voc12 / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    mat12 = data_copy / "voc_2012_trainval.mat"
    write_proposal_mat(mat12, ids, boxes, b"test")
    mats = data_copy / "selective_search_data"
    mat07 = str(mats / "voc_2007_trainval.mat")
    mat_files = {"VOC2007/trainval": mat07, "VOC2012/trainval": str(mat12)}
    files = MatProposalFiles(mat07, str(mats / "voc_2007_test.mat"), mat_files=mat_files)
    split = "VOC2007/trainval+VOC2012/trainval"
    index = VOCIndex(data_copy, split, proposals=files.for_split(split))
    alone = VOCIndex(data_copy, "trainval", proposals=files.for_split("trainval"))
    assert [r.image_id for r in index] == [r.image_id for r in alone] + ids
    for joined, single in zip(index, alone, strict=False):
        np.testing.assert_array_equal(joined.proposals.boxes, single.proposals.boxes)
    np.testing.assert_array_equal(index[-1].proposals.boxes, boxes[ids[-1]])
