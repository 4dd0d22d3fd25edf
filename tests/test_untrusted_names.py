"""Class names, image ids and split names from data or config never become paths outside the
data set or the run directory: the readers refuse them, naming the file and the line, and the
writers refuse them again (``contained_path``) before writing anything."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from wsl.callbacks.box_pictures import BoxPictures
from wsl.callbacks.heatmaps import HeatmapPictures
from wsl.data.annotations import parse_voc_xml, read_class_list, read_image_set
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCImageLabelsDataModule
from wsl.data.voc import ImageRecord, VOCIndex
from wsl.evaluation.voc_detection import write_devkit_results
from wsl.runtime.names import contained_path, name_problem
from wsl.structures.detections import Detections
from wsl.structures.evidence import ClassEvidence

VOC = Path("VOCdevkit/VOC2007")
HOSTILE_CLASS = "../../../../victim"
VICTIM_TEXT = "precious\n"


def datamodule(root: Path, **overrides) -> VOCImageLabelsDataModule:
    settings = {"root": str(root), "train_split": "trainval", "val_split": "test"} | overrides
    return VOCImageLabelsDataModule(**settings)


def devkit_victim(results: Path, split: str, name: str) -> Path:
    """Plant a victim file where ``comp4_det_<split>_<name>.txt`` under ``results`` would land
    (``name`` unchecked) and return its path."""
    victim = Path(os.path.normpath(results / f"comp4_det_{split}_{name}.txt"))
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text(VICTIM_TEXT)
    return victim


def files_under(folder: Path) -> set[Path]:
    """Every file below ``folder``."""
    return {p for p in folder.rglob("*") if p.is_file()}


# -- name_problem and contained_path ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["cat", "potted plant", "café", "狗", "a..b", "...", ".hidden", "x" * 255, "é" * 127, "000005"],
)
def test_plain_names(name: str) -> None:
    assert name_problem(name) is None
    assert contained_path("/run", "boxes", name) == Path("/run", "boxes", name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\t", "empty"),
        ("a/b", "path separator '/'"),
        ("a\\b", "path separator '\\\\'"),
        ("../../victim", "path separator '/'"),
        (".", "names a directory"),
        ("..", "names a directory"),
        ("a\x00b", r"non-printable character '\x00'"),
        ("a\nb", r"non-printable character '\n'"),
        ("a\tb", r"non-printable character '\t'"),
        ("bell\x07", r"non-printable character '\x07'"),
        ("zero\u200bwidth", r"non-printable character '\u200b'"),
        ("bad\udcffbyte", r"non-printable character '\udcff'"),
        (" cat", "starts or ends with whitespace"),
        ("cat ", "starts or ends with whitespace"),
        ("x" * 256, "256 bytes"),
        ("é" * 128, "256 bytes"),
        (3, "of type int"),
    ],
)
def test_names_that_are_not_plain(name: str, problem: str) -> None:
    found = name_problem(name)
    assert found is not None and problem in found
    with pytest.raises(ValueError, match="is not a plain name") as caught:
        contained_path("/run", "boxes", name)
    assert repr(name) in str(caught.value) and problem in str(caught.value)


def test_contained_path_names_the_first_bad_part(tmp_path: Path) -> None:
    assert contained_path(tmp_path) == tmp_path
    with pytest.raises(ValueError, match=r"'\.\.' is not a plain name .* under ") as caught:
        contained_path(tmp_path, "fine", "..", "also/bad")
    assert str(tmp_path) in str(caught.value)


# -- classes.txt and data.classes ---------------------------------------------------------------


def test_hostile_class_in_classes_txt_is_refused_and_victim_untouched(
    data_copy: Path, tmp_path: Path
) -> None:
    classes_txt = data_copy / VOC / "classes.txt"
    names = classes_txt.read_text().split()
    classes_txt.write_text("\n".join([*names[:2], "", "   ", HOSTILE_CLASS, *names[2:]]) + "\n")
    results = tmp_path / "runs" / "one" / "results"
    victim = devkit_victim(results, "test", HOSTILE_CLASS)
    assert not victim.is_relative_to(results)

    module = datamodule(data_copy)
    with pytest.raises(DataError, match=r"line 5: class name '\.\./\.\./\.\./\.\./victim' is not"):
        write_devkit_results(results, "test", module.class_names, [], [])
    with pytest.raises(DataError, match="line 5: class name") as caught:
        module.setup("fit")
    assert caught.value.path == classes_txt
    assert "path separator '/'" in str(caught.value) and "rename the class" in str(caught.value)
    assert victim.read_text() == VICTIM_TEXT
    assert not results.exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/b", "path separator '/'"),
        ("..", "names a directory"),
        (".", "names a directory"),
        ("back\\slash", "path separator"),
        ("bell\x07", "non-printable character"),
        ("nul\x00", "non-printable character"),
        ("form\x0cfeed", "non-printable character"),
        ("x" * 300, "300 bytes"),
    ],
)
def test_classes_txt_names_the_line_of_a_bad_class(
    data_copy: Path, name: str, problem: str
) -> None:
    classes_txt = data_copy / VOC / "classes.txt"
    classes_txt.write_text(f"circle\n\n{name}\nsquare\n")
    with pytest.raises(DataError, match=r"^.*classes\.txt: line 3: class name ") as caught:
        read_class_list(data_copy / VOC)
    assert caught.value.path == classes_txt
    assert repr(name) in str(caught.value) and problem in str(caught.value)


def test_blank_lines_are_skipped_and_potted_plant_is_a_class(
    data_copy: Path, tmp_path: Path
) -> None:
    classes_txt = data_copy / VOC / "classes.txt"
    names = classes_txt.read_text().split()
    classes_txt.write_text("\n\n".join([*names, "  potted plant  ", "café"]) + "\n\n  \n")
    module = datamodule(data_copy)
    assert module.class_names == [*names, "potted plant", "café"]
    module.setup("fit")
    results = tmp_path / "results"
    paths = write_devkit_results(results, "test", module.class_names, [], [])
    assert paths[-2] == results / "comp4_det_test_potted plant.txt" and paths[-2].is_file()
    assert files_under(results) == set(paths)


@pytest.mark.parametrize("name", [HOSTILE_CLASS, "a/b", "..", "tab\tbed", ""])
def test_config_classes_are_checked_where_they_enter(generated_root: Path, name: str) -> None:
    names = list(read_class_list(generated_root / VOC))
    with pytest.raises(ValueError, match=r"data\.classes\[2\]=.* is not a plain name"):
        datamodule(generated_root, classes=[*names[:2], name, *names[2:]])


def test_config_classes_listed_twice_are_refused(generated_root: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.classes lists circle more than once"):
        datamodule(generated_root, classes=["circle", "square", "circle"])


# -- image sets ---------------------------------------------------------------------------------


def plant_outside_image(data_root: Path, image_id: str) -> Path:
    """A valid XML and JPEG exactly where ``Annotations/<image_id>.xml`` and
    ``JPEGImages/<image_id>.jpg`` resolve; return the XML."""
    voc_dir = data_root / VOC
    source = read_image_set(voc_dir, "trainval")[0]
    xml = Path(os.path.normpath(voc_dir / "Annotations" / f"{image_id}.xml"))
    jpg = Path(os.path.normpath(voc_dir / "JPEGImages" / f"{image_id}.jpg"))
    xml.parent.mkdir(parents=True, exist_ok=True)
    text = (voc_dir / "Annotations" / f"{source}.xml").read_text()
    xml.write_text(text.replace(f"<filename>{source}.jpg<", f"<filename>{xml.stem}.jpg<"))
    shutil.copyfile(voc_dir / "JPEGImages" / f"{source}.jpg", jpg)
    return xml


@pytest.mark.parametrize(
    ("image_id", "outside"), [("../../outside", "VOCdevkit"), ("../../../../outside", "..")]
)
def test_image_id_leaving_the_data_set_is_refused(
    data_copy: Path, image_id: str, outside: str
) -> None:
    planted = plant_outside_image(data_copy, image_id)
    assert planted.parent == Path(os.path.normpath(data_copy / outside))
    parse_voc_xml(planted, read_class_list(data_copy / VOC))  # a real annotation, readable
    image_set = data_copy / VOC / "ImageSets" / "Main" / "trainval.txt"
    ids = read_image_set(data_copy / VOC, "trainval")
    image_set.write_text("\n".join([*ids[:3], image_id, *ids[3:]]) + "\n")
    for on_error in ("raise", "skip"):  # a hostile list is not one bad image
        with pytest.raises(DataError, match=rf"line 4: id '{image_id}' is not a plain name") as e:
            datamodule(data_copy, on_error=on_error).setup("fit")
        assert e.value.path == image_set
        assert "path separator '/'" in str(e.value) and "fix the line" in str(e.value)


@pytest.mark.parametrize("split", ["../trainval", "..", "Main/trainval", "", "VOC2007/.."])
def test_split_name_is_checked_before_reading(data_copy: Path, split: str) -> None:
    match = r"image set name .* is not a plain name|is not a VOCdevkit folder such as VOC2012"
    with pytest.raises(ValueError, match=match):
        VOCIndex(data_copy, split)


# -- writers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "classes"),
    [("test", ["cat", HOSTILE_CLASS]), ("test", ["cat", "dog\nx"]), ("../../../..", ["victim"])],
)
def test_results_files_refuse_hostile_names_and_write_nothing(
    tmp_path: Path, split: str, classes: list[str]
) -> None:
    results = tmp_path / "runs" / "one" / "results"
    victim = devkit_victim(results, split, classes[-1])
    detections = [(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), torch.tensor([0.5]), torch.tensor([0]))]
    with pytest.raises(ValueError, match="is not a plain name"):
        write_devkit_results(results, split, classes, ["000001"], detections)
    assert victim.read_text() == VICTIM_TEXT
    assert files_under(tmp_path) == {victim}


class FakeModel(torch.nn.Module):
    """What the picture callbacks ask of a model, for one class: zero score maps and logits
    (``detect_with_evidence``) and one box per image (``detections_by_source``)."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def detect_with_evidence(self, batch: dict) -> tuple[list, list]:
        n = len(batch["image"])
        return [None] * n, [ClassEvidence(torch.full((1,), 0.5), torch.full((1, 4, 4), 0.5))] * n

    def detections_by_source(self, batch: dict) -> dict:
        box = torch.tensor([[1.0, 1.0, 20.0, 20.0]])
        found = Detections(box, torch.tensor([0.9]), torch.tensor([0]))
        return {"wsddn": [found] * len(batch["index"])}


class OneRecordIndex:
    """The index of :class:`OneRecordDataset`: its record and class names."""

    def __init__(self, record: ImageRecord, classes: tuple[str, ...]) -> None:
        self.record = record
        self.classes = classes

    def __getitem__(self, i: int) -> ImageRecord:
        return self.record


class OneRecordDataset:
    """A dataset of one real image whose record and class names a test may make hostile."""

    def __init__(self, record: ImageRecord, classes: tuple[str, ...]) -> None:
        self.index = OneRecordIndex(record, classes)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.zeros(3, 8, 8), "gt_classes": torch.tensor([0])}


def fake_trainer() -> SimpleNamespace:
    strategy = SimpleNamespace(batch_to_device=lambda batch, device: batch)
    return SimpleNamespace(is_global_zero=True, global_step=3, loggers=[], strategy=strategy)


def renamed_record(root: Path, image_id: str) -> ImageRecord:
    """The first record of ``root``'s trainval split, its image id replaced."""
    record = VOCIndex(root, "trainval", verify_images="none")[0]
    return replace(record, annotation=replace(record.annotation, image_id=image_id))


@pytest.mark.parametrize(
    ("image_id", "class_name"), [("../../../../../x", "circle"), ("1", "../../../../../y")]
)
def test_heatmap_pictures_stay_in_the_run_directory(
    generated_root: Path, tmp_path: Path, image_id: str, class_name: str
) -> None:
    run = tmp_path / "a" / "b" / "run"
    dataset = OneRecordDataset(renamed_record(generated_root, image_id), (class_name,))
    callback = HeatmapPictures(output_dir=str(run))
    with pytest.raises(ValueError, match="is not a plain name"):
        callback.draw(fake_trainer(), FakeModel(), dataset, [0], "heatmaps/x", "heatmaps/x")
    assert all(p.is_relative_to(run) for p in files_under(tmp_path))


def test_heatmap_pictures_with_plain_names_land_where_documented(
    generated_root: Path, tmp_path: Path
) -> None:
    dataset = OneRecordDataset(renamed_record(generated_root, "2008_000123"), ("potted plant",))
    callback = HeatmapPictures(output_dir=str(tmp_path))
    callback.draw(fake_trainer(), FakeModel(), dataset, [0], "heatmaps/x", "heatmaps/x")
    folder = tmp_path / "heatmaps" / "x" / "batch_0" / "2008_000123"
    assert files_under(tmp_path) == {folder / "image.png", folder / "potted plant.png"}


def box_pictures(root: Path, output_dir: Path, split: str, image_id: str) -> BoxPictures:
    """:class:`BoxPictures` set up as at fit start, on one image of ``root`` renamed."""
    callback = BoxPictures(output_dir=str(output_dir))
    callback.split_name = split
    callback.dataset = OneRecordDataset(renamed_record(root, image_id), ("circle",))
    box = torch.tensor([[1.0, 1.0, 20.0, 20.0]])
    batch = {"image_id": [image_id], "index": [0], "original_gt_boxes": [box]}
    callback.loader = [batch | {"gt_classes": [torch.tensor([0])]}]
    return callback


@pytest.mark.parametrize(("split", "image_id"), [("trainval", "../../../../x"), ("../..", "1")])
def test_box_pictures_stay_in_the_run_directory(
    generated_root: Path, tmp_path: Path, split: str, image_id: str
) -> None:
    callback = box_pictures(generated_root, tmp_path / "a" / "b" / "run", split, image_id)
    with pytest.raises(ValueError, match="is not a plain name"):
        callback.draw(fake_trainer(), FakeModel())
    assert files_under(tmp_path) == set()


def test_box_pictures_with_plain_names_land_where_documented(
    generated_root: Path, tmp_path: Path
) -> None:
    box_pictures(generated_root, tmp_path, "trainval", "2008_000123").draw(
        fake_trainer(), FakeModel()
    )
    assert files_under(tmp_path) == {tmp_path / "boxes" / "trainval" / "step_3" / "2008_000123.png"}
