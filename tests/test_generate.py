"""The generated VOC2007-layout data set: layout, readers, proposals, determinism, cues."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from torch import nn
from torchmetrics.functional.classification import multilabel_average_precision
from torchvision.ops import box_iou

import wsl.data.generate as generate
from wsl.data.annotations import ImageAnnotation, parse_voc_xml, read_image_set
from wsl.data.bad_input import DataError
from wsl.data.generate import generate_voc, main
from wsl.data.generated_images import BODY_MUTING, DIFFICULT_SIDE, LOOKS, class_styles, draw_image
from wsl.data.generated_proposals import growth_boxes, synthetic_proposals
from wsl.structures.boxes import voc_area

OPTIONS = {"seed": 0, "num_trainval": 40, "num_test": 20, "proposals_per_image": 80}
CLASSES = ("circle", "square", "triangle", "cross")
COLOURS = {s.name: np.array(s.colour) for s in class_styles(4)}
SPLITS = ("train", "val", "trainval", "test")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    generate_voc(root, **OPTIONS)
    return root


def voc(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2007"


def annotations(root: Path, split: str) -> list[ImageAnnotation]:
    return [
        parse_voc_xml(voc(root) / "Annotations" / f"{i}.xml", CLASSES)
        for i in read_image_set(voc(root), split)
    ]


def as_xyxy(mat_boxes: np.ndarray) -> np.ndarray:
    """Fast R-CNN ``[y1 x1 y2 x2]`` 1-based to 0-based ``x1 y1 x2 y2``."""
    return mat_boxes[:, [1, 0, 3, 2]] - 1


def test_class_names_and_shapes() -> None:
    assert [s.name for s in class_styles(4)] == list(CLASSES)
    many = class_styles(20)
    assert many[0].name == "red_circle" and many[8].name == "green_circle"
    assert len({s.name for s in many}) == 20
    assert len({(s.shape, s.colour) for s in many}) == 20
    with pytest.raises(ValueError, match="num_classes"):
        class_styles(21)


def test_layout_ids_and_splits(root: Path) -> None:
    assert (voc(root) / "classes.txt").read_text() == "circle\nsquare\ntriangle\ncross\n"
    ids = {s: read_image_set(voc(root), s) for s in SPLITS}
    assert ids["trainval"] == [f"{i:06d}" for i in range(1, 41)]
    assert ids["test"] == [f"{i:06d}" for i in range(41, 61)]
    assert len(ids["train"]) == len(ids["val"]) == 20
    assert sorted(ids["train"] + ids["val"]) == ids["trainval"]
    assert ids["train"] == sorted(ids["train"]) and ids["val"] == sorted(ids["val"])
    sizes = [Image.open(voc(root) / "JPEGImages" / f"{i}.jpg").size for i in ids["trainval"]]
    assert all(102 <= w <= 128 and 102 <= h <= 128 for w, h in sizes)
    assert sum(w != h for w, h in sizes) > 30  # mostly not square


def test_torchvision_reads_the_objects_that_were_drawn(root: Path) -> None:
    """VOCDetection parses every file; each box is the tight box of its class's colour."""
    dataset = torchvision.datasets.VOCDetection(root, year="2007", image_set="trainval")
    assert len(dataset) == 40
    errors = []  # found colour extent minus annotated box, per object
    for image, target in dataset:
        annotation = target["annotation"]
        assert annotation["folder"] == "VOC2007" and annotation["segmented"] == "0"
        assert image.size == (int(annotation["size"]["width"]), int(annotation["size"]["height"]))
        assert 1 <= len(annotation["object"]) <= 3
        pixels = np.asarray(image, dtype=float)
        for obj in annotation["object"]:
            assert obj["name"] in CLASSES and obj["pose"] == "Unspecified"
            box = np.array([int(obj["bndbox"][t]) - 1 for t in ("xmin", "ymin", "xmax", "ymax")])
            # the class colour, looked for in the box grown by 4 px (objects keep 4 px apart)
            x1, y1 = np.maximum(box[:2] - 4, 0)
            window = pixels[y1 : box[3] + 5, x1 : box[2] + 5]
            ys, xs = np.nonzero(np.linalg.norm(window - COLOURS[obj["name"]], axis=2) < 60)
            errors.append([xs.min() + x1, ys.min() + y1, xs.max() + x1, ys.max() + y1] - box)
    errors = np.array(errors)
    assert len(errors) > 60
    assert np.abs(errors).max() <= 2  # JPEG blurs thin tips and edges by a pixel or two
    assert (np.median(errors, axis=0) == 0).all()  # but no edge is off by one throughout


def test_same_seed_same_bytes_other_seed_other_data(root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_voc(again, **OPTIONS)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 60 * 2 + 4 * 5 + 1 + 2
    for name in files:
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate_voc(other, **{**OPTIONS, "seed": 1})
    for name in ("JPEGImages/000001.jpg", "Annotations/000001.xml", "ImageSets/Main/train.txt"):
        assert (voc(root) / name).read_bytes() != (voc(other) / name).read_bytes()
    mat = Path("selective_search_data/voc_2007_test.mat")
    assert (root / mat).read_bytes() != (other / mat).read_bytes()


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_mat_proposals_cover_every_object(root: Path, split: str) -> None:
    mat = scipy.io.loadmat(root / "selective_search_data" / f"voc_2007_{split}.mat")
    ids = read_image_set(voc(root), split)
    assert mat["boxes"].shape == (1, len(ids))
    assert [str(name[0]) for name in mat["images"].ravel()] == ids
    for boxes, annotation in zip(mat["boxes"].ravel(), annotations(root, split), strict=True):
        assert boxes.dtype == np.float64 and boxes.shape[1] == 4
        assert 70 <= len(boxes) <= 90  # 90-110 % of 80
        assert len(np.unique(boxes, axis=0)) == len(boxes)
        xyxy = as_xyxy(boxes)
        w, h = annotation.width, annotation.height
        assert (xyxy[:, 0] >= 0).all() and (xyxy[:, 1] >= 0).all()
        assert (xyxy[:, 0] <= xyxy[:, 2]).all() and (xyxy[:, 2] <= w - 1).all()
        assert (xyxy[:, 1] <= xyxy[:, 3]).all() and (xyxy[:, 3] <= h - 1).all()
        gt = annotation.boxes()[~annotation.difficult_mask()]
        plus_one = torch.tensor([0, 0, 1, 1])
        iou = box_iou(
            torch.tensor(gt) + plus_one, torch.tensor(xyxy, dtype=torch.float32) + plus_one
        )
        assert (iou.max(dim=1).values >= 0.7).all(), annotation.image_id
        assert (iou.max(dim=0).values < 0.3).sum() > len(boxes) / 3  # many background boxes


def test_per_class_files_follow_voc_flags(root: Path) -> None:
    """1: a non-difficult instance, 0: only difficult instances, -1: none."""
    seen = Counter()
    for split in SPLITS:
        main_dir = voc(root) / "ImageSets" / "Main"
        flags = {
            name: dict(line.split() for line in (main_dir / f"{name}_{split}.txt").open())
            for name in CLASSES
        }
        items = annotations(root, split)
        for name in CLASSES:
            assert list(flags[name]) == [a.image_id for a in items]
            for a in items:
                difficult = [o.difficult for o in a.objects if o.name == name]
                expected = -1 if not difficult else (0 if all(difficult) else 1)
                assert int(flags[name][a.image_id]) == expected, (split, name, a.image_id)
                seen[expected] += 1
    assert seen[1] and seen[-1] and seen[0]  # all three cases occur


def test_every_class_is_in_every_split(root: Path) -> None:
    for split in ("train", "val", "test"):
        items = annotations(root, split)
        counts = Counter(
            name for a in items for name in {o.name for o in a.objects if not o.difficult}
        )
        assert all(counts[name] >= len(items) // 4 for name in CLASSES), (split, counts)


def test_truncated_difficult_and_repeated_objects(root: Path) -> None:
    items = annotations(root, "trainval") + annotations(root, "test")
    objects = [(a, o) for a in items for o in a.objects]
    truncated = [(a, o) for a, o in objects if o.truncated]
    assert truncated and any(not o.truncated for _, o in objects)
    for a, o in truncated:  # a truncated box ends at the image border
        x1, y1, x2, y2 = o.box
        assert x1 == 0 or y1 == 0 or x2 == a.width - 1 or y2 == a.height - 1
    for _, o in objects:
        x1, y1, x2, y2 = o.box
        assert o.difficult == (np.sqrt((x2 - x1 + 1) * (y2 - y1 + 1)) < DIFFICULT_SIDE)
    assert any(o.difficult for _, o in objects)
    repeated = 0
    for a in items:
        for name in CLASSES:
            boxes = [o.box for o in a.objects if o.name == name and not o.difficult]
            if len(boxes) == 2:
                (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes
                assert ax1 > bx2 + 10 or bx1 > ax2 + 10 or ay1 > by2 + 10 or by1 > ay2 + 10
                repeated += 1
    assert repeated >= 3


def test_classes_differ_in_colour(root: Path) -> None:
    means: dict[str, list[np.ndarray]] = {name: [] for name in CLASSES}
    for a in annotations(root, "trainval"):
        pixels = np.asarray(Image.open(voc(root) / "JPEGImages" / a.filename), dtype=float)
        for o in a.objects:
            x1, y1, x2, y2 = (int(v) for v in o.box)
            means[o.name].append(pixels[y1 : y2 + 1, x1 : x2 + 1].reshape(-1, 3).mean(0))
    centres = {name: np.mean(m, axis=0) for name, m in means.items()}
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            assert np.linalg.norm(centres[a] - centres[b]) > 80, (a, b, centres)


def test_existing_set_is_kept_unless_forced(tmp_path: Path) -> None:
    small = {"num_trainval": 4, "num_test": 2, "proposals_per_image": 10}
    classes = voc(tmp_path) / "classes.txt"
    generate_voc(tmp_path, **small)
    classes.write_text("edited\n")
    assert generate_voc(tmp_path, **small) == voc(tmp_path)
    assert classes.read_text() == "edited\n"
    generate_voc(tmp_path, **small, force=True)
    assert classes.read_text() == "circle\nsquare\ntriangle\ncross\n"
    (voc(tmp_path) / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(DataError, match=r"VOC2007: exists but has no ImageSets/Main/test\.txt"):
        generate_voc(tmp_path, **small)
    generate_voc(tmp_path, **small, force=True)
    assert (voc(tmp_path) / "ImageSets" / "Main" / "test.txt").is_file()


def test_interrupted_run_leaves_no_data_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(generate, "write_proposal_mat", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_voc(tmp_path, num_trainval=4, num_test=2, proposals_per_image=10)
    assert not voc(tmp_path).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["selective_search_data"]


def test_command_line_hard_twenty_classes(tmp_path: Path) -> None:
    main(
        [
            *("--root", str(tmp_path), "--num-classes", "20", "--difficulty", "hard"),
            *("--seed", "3", "--trainval", "6", "--test", "4", "--image-size", "96"),
            *("--proposals-per-image", "20"),
        ]
    )
    names = (voc(tmp_path) / "classes.txt").read_text().split()
    assert names == [s.name for s in class_styles(20)]
    for image_id in read_image_set(voc(tmp_path), "trainval") + read_image_set(
        voc(tmp_path), "test"
    ):
        annotation = parse_voc_xml(voc(tmp_path) / "Annotations" / f"{image_id}.xml", names)
        with Image.open(voc(tmp_path) / "JPEGImages" / annotation.filename) as image:
            assert image.size == (annotation.width, annotation.height)
            assert max(image.size) <= 96
    assert len(list((voc(tmp_path) / "ImageSets" / "Main").glob("*_*.txt"))) == 20 * 4


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        generate_voc(tmp_path, difficulty="extreme")
    with pytest.raises(ValueError, match="at least 2 trainval"):
        generate_voc(tmp_path, num_trainval=1)
    assert not any(tmp_path.iterdir())


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to 48x48 in [0, 1] and their image-level labels."""
    images, labels = [], []
    for annotation in annotations(root, split):
        image = Image.open(voc(root) / "JPEGImages" / annotation.filename).resize((48, 48))
        images.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
        label = torch.zeros(len(CLASSES))
        label[[CLASSES.index(o.name) for o in annotation.objects]] = 1
        labels.append(label)
    return torch.stack(images), torch.stack(labels)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test (on 2 shared cores the faster choice), then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_cues_are_learnable_from_image_labels(tmp_path: Path) -> None:
    """A 3-conv-layer CNN with global max pooling, trained from scratch for 10 epochs on
    image-level labels (1-3 CPU seconds), classifies the test images well."""
    generate_voc(tmp_path, num_trainval=120, num_test=60, image_size=64, proposals_per_image=5)
    x_train, y_train = load_split(tmp_path, "trainval")
    x_test, y_test = load_split(tmp_path, "test")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, len(CLASSES), 3, padding=1), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
    )  # fmt: skip

    def test_map() -> float:
        net.eval()
        with torch.no_grad():
            scores = net(x_test)
        return float(multilabel_average_precision(scores, y_test.int(), num_labels=len(CLASSES)))

    untrained = test_map()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(10):
        for batch in torch.randperm(len(x_train)).split(20):
            scores = net(x_train[batch])
            loss = nn.functional.binary_cross_entropy_with_logits(scores, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained = test_map()
    print(f"classification mAP on test: untrained {untrained:.3f}, trained {trained:.3f}")
    assert trained > untrained + 0.2 and trained > 0.9


def test_parts_objects_have_a_head_on_a_muted_body_and_part_proposals() -> None:
    styles = class_styles(4)
    rng = np.random.default_rng(5)
    image, objects = draw_image(rng, 128, 120, [0], styles, LOOKS["parts"])
    [obj] = objects
    head, body = np.array(obj.parts[1]), np.array(obj.parts[0])
    gt = np.array(obj.box)
    # the object's box is the union of its parts; the head sits at its top, the body at its foot
    np.testing.assert_array_equal(np.minimum(head[:2], body[:2]), gt[:2])
    np.testing.assert_array_equal(np.maximum(head[2:], body[2:]), gt[2:])
    assert head[1] == gt[1] and body[3] == gt[3]
    assert 0.2 < voc_area(head) / voc_area(gt) < 0.4  # the head is about a third of the box
    pixels = np.asarray(image, dtype=float)
    head_centre = pixels[(head[1] + head[3]) // 2, (head[0] + head[2]) // 2]
    body_foot = pixels[body[3] - (body[3] - body[1]) // 5, (body[0] + body[2]) // 2]
    muted = np.array(styles[0].colour) * (1 - BODY_MUTING) + 128 * BODY_MUTING
    assert np.abs(head_centre - styles[0].colour).max() < 40  # noise 4, jitter 6
    assert np.abs(body_foot - muted).max() < 40 and np.abs(body_foot - styles[0].colour).max() > 50
    proposals = torch.as_tensor(synthetic_proposals(rng, objects, 128, 120, 50), dtype=torch.float)
    growth = [np.array(b) for b in growth_boxes(obj)]
    for box in (head, body, gt, *growth):  # tight proposals around the parts, whole, growth
        assert box_iou(torch.as_tensor(box[None], dtype=torch.float), proposals).max() > 0.75
    # the growth boxes chain the head to the whole by IoU >= 0.5 steps; the head alone does not
    chain = torch.as_tensor(np.stack([head, *growth, gt]), dtype=torch.float)
    steps = box_iou(chain[:-1], chain[1:]).diagonal()
    assert len(growth) == 2 and (steps >= 0.5).all() and box_iou(chain[:1], chain[-1:]) < 0.4
