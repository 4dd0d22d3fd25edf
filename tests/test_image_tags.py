"""The image-tags layout (``labels.csv`` of tags, no boxes): quoted fields, hand-checked label
vectors, the class list (sorted names or ``classes.txt``), the split column and the seeded split,
and the errors naming the CSV line, raised or skipped."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from wsl.data.bad_input import DataError
from wsl.data.image_tags import ImageTagsIndex, ImageTagsLayout
from wsl.runtime.settings import SettingError

# Images of distinct sizes (width, height), so a swapped width and height would show.
IMAGES = {
    "photos/cat 1.jpg": (8, 6),
    "photos/cat, dog.png": (6, 8),
    "street.jpg": (8, 8),
    "park/dog.jpg": (10, 8),
}
CSV = (
    "\ufeffimage,labels,split,photographer\n"
    "photos/cat 1.jpg,cat,train,ann\n"
    '"photos/cat, dog.png", "cat;dog",train,bob\n'
    "street.jpg,,val,\n"
    "park/dog.jpg, dog ; person;dog,test,\n"
)


def write_image(root: Path, name: str, size: tuple[int, int] = (8, 8)) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)  # the suffix picks JPEG or PNG


def make_dataset(root: Path, csv_text: str, images: dict[str, tuple[int, int]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text(csv_text, encoding="utf-8")
    for name, size in images.items():
        write_image(root, name, size)
    return root


def ids(index: ImageTagsIndex) -> list[str]:
    return [record.image_id for record in index.records]


def test_labels_of_quoted_fields_and_subfolders(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, CSV, IMAGES)
    train = ImageTagsIndex(root, "train")
    assert train.classes == ("cat", "dog", "person")
    assert not train.has_boxes
    assert ids(train) == ["photos_cat 1", "photos_cat, dog"]
    first, second = train.records
    np.testing.assert_array_equal(first.labels, [1, 0, 0])
    np.testing.assert_array_equal(second.labels, [1, 1, 0])
    assert first.labels.dtype == np.float32 and first.label_weights.dtype == np.float32
    np.testing.assert_array_equal(second.label_weights, [1, 1, 1])
    assert second.image_path == root / "photos" / "cat, dog.png"
    assert second.annotation.filename == "photos/cat, dog.png"
    assert (second.annotation.width, second.annotation.height) == (6, 8)
    assert (first.annotation.width, first.annotation.height) == (8, 6)
    assert second.annotation.objects == ()

    (val,) = ImageTagsIndex(root, "val").records  # an empty labels field: negative for all
    np.testing.assert_array_equal(val.labels, [0, 0, 0])
    np.testing.assert_array_equal(val.label_weights, [1, 1, 1])
    (test,) = ImageTagsIndex(root, "test").records  # spaces stripped, a repeated name once
    assert test.image_id == "park_dog"
    np.testing.assert_array_equal(test.labels, [0, 1, 1])
    assert ids(ImageTagsIndex(root, "trainval")) == ["photos_cat 1", "photos_cat, dog", "street"]


def test_classes_sorted_or_in_classes_txt_order(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, CSV, IMAGES)
    classes, source = ImageTagsIndex.dataset_classes(root, "train", split_seed=3)
    assert classes == ("cat", "dog", "person")
    assert source == f"the labels of {root / 'labels.csv'}"

    (root / "classes.txt").write_text("person\ndog\ncat\nbird\n", encoding="utf-8")
    classes, source = ImageTagsIndex.dataset_classes(root)
    assert classes == ("person", "dog", "cat", "bird")
    assert source == str(root / "classes.txt")
    test = ImageTagsIndex(root, "test")
    assert test.classes == classes
    np.testing.assert_array_equal(test.records[0].labels, [1, 1, 0, 0])
    # Given classes win over classes.txt, in their order.
    given = ImageTagsIndex(root, "train", classes=["dog", "cat", "person"])
    np.testing.assert_array_equal(given.records[1].labels, [1, 1, 0])
    with pytest.raises(SettingError, match="not options"):
        ImageTagsIndex.dataset_classes(root, split_sed=1)


def test_class_not_in_classes_txt_names_line_and_class(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, CSV, IMAGES)
    (root / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labels\.csv: line 5: class 'person' is not in"):
        ImageTagsIndex(root, "test")
    assert len(ImageTagsIndex(root, "train")) == 2  # other splits read fine
    with pytest.raises(DataError, match="line 2: class 'cat' is not in"):
        ImageTagsIndex(root, "train", classes=["dog", "person"])


def seeded_csv(names: list[str]) -> str:
    return "labels,image\n" + "".join(
        f"{'cat' if i % 2 else ''},{n}\n" for i, n in enumerate(names)
    )


def seeded_assignment(root: Path, **options) -> dict[str, set[str]]:
    return {s: set(ids(ImageTagsIndex(root, s, **options))) for s in ("train", "val", "test")}


def test_seeded_split_is_stable_and_covers_every_image(tmp_path: Path) -> None:
    names = [f"img{i:02d}.jpg" for i in range(20)]
    images = dict.fromkeys(names, (8, 8))
    root = make_dataset(tmp_path / "a", seeded_csv(names), images)
    assignment = seeded_assignment(root)
    assert [len(assignment[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    everyone = assignment["train"] | assignment["val"] | assignment["test"]
    assert everyone == {f"img{i:02d}" for i in range(20)}  # each once: the sizes sum to 20
    assert seeded_assignment(root) == assignment
    assert seeded_assignment(root, split_seed=0) == assignment
    assert seeded_assignment(root, split_seed=1) != assignment
    trainval = set(ids(ImageTagsIndex(root, "trainval")))
    assert trainval == assignment["train"] | assignment["val"]

    shuffled = [names[i] for i in np.random.default_rng(5).permutation(20)]
    other = make_dataset(tmp_path / "b", seeded_csv(shuffled), images)
    assert seeded_assignment(other) == assignment  # the rows' order does not matter

    halves = {"train": 0.5, "test": 0.5}
    train, test = (
        set(ids(ImageTagsIndex(root, s, split_fractions=halves))) for s in ("train", "test")
    )
    assert len(train) == len(test) == 10 and not train & test
    with pytest.raises(DataError, match="split 'val' has no image"):
        ImageTagsIndex(root, "val", split_fractions=halves)


def test_split_settings_and_empty_splits(tmp_path: Path) -> None:
    root = make_dataset(
        tmp_path, seeded_csv(["a.jpg", "b.jpg"]), {"a.jpg": (8, 8), "b.jpg": (8, 8)}
    )
    with pytest.raises(SettingError, match="'valid' is not valid"):
        ImageTagsIndex(root, "valid")
    with pytest.raises(SettingError, match=r"sum to 0\.9"):
        ImageTagsIndex(root, "train", split_fractions={"train": 0.8, "val": 0.1})
    with pytest.raises(SettingError, match=r"names \['dev'\]"):
        ImageTagsIndex(root, "train", split_fractions={"train": 0.5, "dev": 0.5})
    with pytest.raises(DataError, match="split 'val' has no image"):
        ImageTagsIndex(root, "val")  # 2 images: 2 train, 0 val, 0 test
    assert len(ImageTagsIndex(root, "train")) == 2


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a.jpg,cat,train\nb.jpg,dog,train\na.jpg,dog,test\n", r"lines 2 and 4: images 'a\.jpg'"),
        ("a/b.jpg,cat,train\na_b.png,dog,val\n", "lines 2 and 3: .* the same id 'a_b'"),
        ("a.jpg,cat,train\nb.jpg,dog,valid\n", "line 3: split 'valid' is not one of"),
        ("a.jpg,cat,train\nb, c.jpg,dog,train\n", r"line 3: 4 field\(s\) but the header has 3"),
        ('a.jpg,cat,train\n"b.jpg,dog,train\n', "line 3: not valid CSV"),
    ],
)
def test_structure_errors_name_the_lines(tmp_path: Path, rows: str, message: str) -> None:
    root = make_dataset(tmp_path, "image,labels,split\n" + rows, {})
    with pytest.raises(DataError, match=message) as raised:
        ImageTagsIndex(root, "train", on_error="skip")  # stops whatever data.on_error says
    assert raised.value.path == root / "labels.csv"


@pytest.mark.parametrize(
    ("header", "missing"), [("image,label", "labels"), ("path,labels", "image"), ("", "")]
)
def test_header_needs_image_and_labels(tmp_path: Path, header: str, missing: str) -> None:
    root = make_dataset(tmp_path, f"{header}\n" if header else "", {})
    match = f"lacks the column\\(s\\) \\['{missing}'\\]" if missing else "needs a header row"
    with pytest.raises(DataError, match=match):
        ImageTagsIndex(root, "train")


def test_missing_image_names_the_line_and_the_image(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, "image,labels\nphotos/a.jpg,cat\nphotos/gone.jpg,cat\n", {})
    write_image(root, "photos/a.jpg")
    with pytest.raises(DataError) as raised:
        ImageTagsIndex(root, "train", split_fractions={"train": 1.0})
    message = str(raised.value)
    assert message.startswith(f"{root / 'labels.csv'}: line 3: image ")
    assert str(root / "photos" / "gone.jpg") in message and "does not exist" in message


@pytest.mark.parametrize("image", ["../x.jpg", "/tmp/x.jpg", "a/./x.jpg", "a\\x.jpg", "a//x.jpg"])
def test_image_path_cannot_leave_the_root(tmp_path: Path, image: str) -> None:
    root = make_dataset(tmp_path / "data", f"image,labels\nok.jpg,cat\n{image},cat\n", {})
    write_image(root, "ok.jpg")
    write_image(tmp_path, "x.jpg")  # what ../x.jpg would reach
    with pytest.raises(
        DataError, match=r"line 3: image .* is not a relative path under data\.root"
    ):
        ImageTagsIndex(root, "train", split_fractions={"train": 1.0})


def test_skip_counts_bad_rows_and_keeps_the_rest(tmp_path: Path) -> None:
    rows = [
        "good.jpg,cat",
        "gone.jpg,cat",  # missing image
        "../out.jpg,cat",  # escapes the root
        "bad name.jpg,cat/dog",  # class name with a separator
        "unknown.jpg,bird",  # not in classes.txt
        "broken.png,dog",  # not an image
        "also good.png,dog",
    ]
    root = make_dataset(
        tmp_path,
        "image,labels\n" + "\n".join(rows) + "\n",
        {
            "good.jpg": (8, 8),
            "bad name.jpg": (8, 8),
            "unknown.jpg": (8, 8),
            "also good.png": (4, 4),
        },
    )
    (root / "broken.png").write_bytes(b"not a png")
    (root / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")
    index = ImageTagsIndex(root, "train", on_error="skip", split_fractions={"train": 1})
    assert ids(index) == ["good", "also good"]
    assert index.policy.skip_count == 5
    skipped = [error.problem.split(":")[0] for error in index.policy.skipped]
    assert skipped == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    np.testing.assert_array_equal(index.records[1].labels, [0, 1])
    with pytest.raises(DataError, match="line 3: image"):
        ImageTagsIndex(root, "train", split_fractions={"train": 1})


def test_layout_config_reads_the_seeded_split(tmp_path: Path) -> None:
    names = [f"img{i:02d}.jpg" for i in range(20)]
    root = make_dataset(tmp_path, seeded_csv(names), dict.fromkeys(names, (8, 8)))
    config = OmegaConf.load(Path(__file__).parents[1] / "conf/data/layout/image_tags.yaml")
    layout = hydra.utils.instantiate(config, split_seed=1, _convert_="all")
    assert isinstance(layout, ImageTagsLayout)
    assert layout.split_name("trainval") == "trainval"
    assert layout.classes(root, "trainval") == ImageTagsIndex.dataset_classes(root)
    index = layout.index(root, "val", on_error="skip")
    assert ids(index) == ids(ImageTagsIndex(root, "val", split_seed=1))
    assert ids(index) != ids(ImageTagsIndex(root, "val", split_seed=0))
    with pytest.raises(SettingError, match="split_seed"):
        ImageTagsLayout(split_seed=-1)
