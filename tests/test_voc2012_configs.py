"""The VOC 2012 and VOC 07+12 experiments (conf/experiment/*voc2012*.yaml, *voc0712*.yaml):
their data, the schedules taken from the authors' VOC 2012 / 07+12 configs, nothing else
changed from the family's VOC 2007 experiment, and the data configs read a devkit laid out as
VOC 2012 beside VOC 2007. Compose only: no training."""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Iterable
from pathlib import Path

import hydra
import pytest
from omegaconf import DictConfig, OmegaConf

from tests.support import compose_cfg
from wsl.data.generate import generate_voc
from wsl.data.proposal_mat import read_proposal_mat, write_proposal_mat

RUN_DIR = Path("/nonexistent/run")  # composing writes nothing
SS = "${data.root}/selective_search_data"
VOC2012_DATA = {
    "data._target_": "wsl.data.datamodule.VOCProposalsDataModule",
    "data.root": "${paths.data_dir}/voc",
    "data.layout.devkit": "VOC2012",
    "data.train_split": "trainval",
    "data.val_split": "val",  # VOC 2012 test has no public annotations
    "data.test_split": "test",  # the evaluation server's results files
    "data.proposals.trainval_mat": f"{SS}/voc_2012_trainval.mat",
    "data.proposals.test_mat": f"{SS}/voc_2012_test.mat",
}
VOC0712_DATA = {
    "data._target_": "wsl.data.datamodule.VOCProposalsDataModule",
    "data.root": "${paths.data_dir}/voc",
    "data.layout.devkit": "VOC2007",
    "data.train_split": "VOC2007/trainval+VOC2012/trainval",
    "data.val_split": "test",
    "data.test_split": "test",  # VOC 2007 test
    "data.proposals.test_mat": f"{SS}/voc_2007_test.mat",
    "data.proposals.mat_files": {
        "VOC2007/trainval": f"{SS}/voc_2007_trainval.mat",
        "VOC2012/trainval": f"{SS}/voc_2012_trainval.mat",
    },
}
# Each experiment: its VOC 2007 experiment and exactly what differs from it (the data, then the
# authors' VOC 2012 / 07+12 settings); everything else must be the VOC 2007 experiment's.
CHANGES = {
    "oicr_voc2012": (
        "oicr_vgg16",
        {
            **VOC2012_DATA,
            # ppengtang/oicr branch pcl, models/VGG16/solver_voc2012.prototxt line 5; the total
            # keeps OICR's 30000 iterations after the step (no authors' file gives it)
            "model.scheduler.milestones": [60000],
            "trainer.max_steps": 90000,
        },
    ),
    "pcl_voc2012": (
        "pcl_vgg16",
        {
            **VOC2012_DATA,
            # pcl.pytorch 0.4.0 configs/baselines/vgg16_voc2012.yaml lines 13-14
            "model.scheduler.schedulers.1.milestones": [75000],
            "trainer.max_steps": 90000,
        },
    ),
    "mist_voc2012": (
        "mist_vgg16",
        {
            **VOC2012_DATA,
            # wetectron configs/voc/V_16_voc12.yaml lines 38-40: 16 images, BASE_LR 0.02
            "data.batch_size": 16,
            "model.optimizer.lr": 1.25e-3,
            "model.optimizer.weight_decay": 1.6e-3,
        },
    ),
    "mist_voc0712": (
        "mist_vgg16",
        {
            **VOC0712_DATA,
            # wetectron configs/voc/V_16_voc0712.yaml lines 38-43
            "data.batch_size": 16,
            "model.optimizer.lr": 1.25e-3,
            "model.optimizer.weight_decay": 1.6e-3,
            "model.scheduler.schedulers.1.milestones": [30000, 35000],
            "trainer.max_steps": 40000,
        },
    ),
    "wsddn_voc2012": (
        "wsddn_vgg16",
        {
            **VOC2012_DATA,
            # the authors' EdgeBoxes are VOC 2007's only: selective search, no box scores
            "model.net.use_proposal_scores": False,
        },
    ),
}


@functools.cache
def _composed(experiment: str) -> DictConfig:
    """The train config of ``experiment``, composed once per module (read-only: copy it)."""
    return compose_cfg("train", [f"experiment={experiment}"], RUN_DIR)


def _on(experiment: str, root: Path) -> DictConfig:
    """``experiment``'s config with ``data.root=root`` (its paths follow: they interpolate it)."""
    cfg = copy.deepcopy(_composed(experiment))
    cfg.data.root = str(root)
    return cfg


def _values(cfg: DictConfig, keys: Iterable[str]) -> dict[str, object]:
    """Each dotted key's value as the YAML writes it (interpolations unresolved)."""
    tree = OmegaConf.to_container(cfg)
    values = {}
    for key in keys:
        node = tree
        for part in key.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        values[key] = node
    return values


@pytest.mark.parametrize(
    ("experiment", "data"), [("voc2012", VOC2012_DATA), ("voc0712", VOC0712_DATA)]
)
def test_the_data_experiments_choose_the_splits_and_files(experiment: str, data: dict) -> None:
    cfg = _composed(experiment)
    assert _values(cfg, data) == data
    assert OmegaConf.select(cfg, "model.net") is None  # data only, as voc2007


@pytest.mark.parametrize("experiment", sorted(CHANGES))
def test_each_experiment_is_its_voc2007_one_with_the_authors_changes(experiment: str) -> None:
    base, changes = CHANGES[experiment]
    cfg = _composed(experiment)
    assert _values(cfg, changes) == changes
    # The VOC 2007 experiment with those values is the whole config (wsddn_voc2012's
    # data/proposals=mat has the keys of wsddn_vgg16's edgeboxes, with the 2012 files).
    expected = copy.deepcopy(_composed(base))
    for key, value in changes.items():
        OmegaConf.update(expected, key, value, merge=False)
    for section in ("data", "model", "trainer", "callbacks"):
        assert OmegaConf.to_container(cfg[section]) == OmegaConf.to_container(expected[section])


@pytest.mark.parametrize("experiment", ["mist_voc2012", "mist_voc0712"])
def test_mist_keeps_the_lr_per_image_and_the_decay_per_step(experiment: str) -> None:
    """BASE_LR 0.02 on the mean of 16 images (VOC 2007: 0.01 on 8), WEIGHT_DECAY 1e-4: on a
    sum over the batch the lr is 0.02 / 16 and lr x wd stays 0.02 x 1e-4."""
    cfg, voc07 = _composed(experiment), _composed("mist_vgg16")
    lr, wd = cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay
    assert lr == pytest.approx(0.02 / cfg.data.batch_size) == voc07.model.optimizer.lr
    assert lr * wd == pytest.approx(0.02 * 1e-4)
    assert voc07.model.optimizer.lr * voc07.model.optimizer.weight_decay == pytest.approx(
        0.01 * 1e-4
    )
    warmup = cfg.model.scheduler.schedulers[0]
    assert warmup.total_iters == 200 and warmup.start_factor == pytest.approx(1 / 3)


# --- The data configs on a generated devkit laid out as VOC 2012 beside VOC 2007 --------------


def _prefixed(text: str) -> str:
    """An image set's or class file's lines with ``2012_`` before each id (the first field)."""
    return "".join(f"2012_{line}" if line.strip() else line for line in text.splitlines(True))


@pytest.fixture(scope="module")
def voc0712_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated VOC2007 and a copy as VOC2012 with every id prefixed ``2012_`` (images,
    XML, image sets, and ``voc_2012_{trainval,test}.mat``), as 07+12 ids are distinct."""
    root = tmp_path_factory.mktemp("voc0712")
    voc07 = generate_voc(root, num_trainval=6, num_test=4, proposals_per_image=10)
    voc12 = root / "VOCdevkit" / "VOC2012"
    (voc12 / "ImageSets" / "Main").mkdir(parents=True)
    (voc12 / "JPEGImages").mkdir()
    (voc12 / "Annotations").mkdir()
    shutil.copy(voc07 / "classes.txt", voc12 / "classes.txt")
    for image in (voc07 / "JPEGImages").glob("*.jpg"):
        shutil.copy(image, voc12 / "JPEGImages" / f"2012_{image.name}")
        xml = (voc07 / "Annotations" / f"{image.stem}.xml").read_text()
        xml = xml.replace(f"<filename>{image.name}<", f"<filename>2012_{image.name}<")
        (voc12 / "Annotations" / f"2012_{image.stem}.xml").write_text(xml)
    for image_set in (voc07 / "ImageSets" / "Main").glob("*.txt"):
        (voc12 / "ImageSets" / "Main" / image_set.name).write_text(_prefixed(image_set.read_text()))
    for split in ("trainval", "test"):
        mat = read_proposal_mat(root / "selective_search_data" / f"voc_2007_{split}.mat")
        ids = [f"2012_{i}" for i in mat.image_ids]
        boxes = {i: p.boxes for i, p in zip(ids, mat.proposals, strict=True)}
        path = root / "selective_search_data" / f"voc_2012_{split}.mat"
        write_proposal_mat(path, ids, boxes, b"test copy")
    return root


def test_voc0712_joins_both_trainvals_with_each_ones_proposals(voc0712_root: Path) -> None:
    cfg = _on("voc0712", voc0712_root)
    datamodule = hydra.utils.instantiate(cfg.data)
    fit = datamodule.build_index(datamodule.splits["fit"])
    ids = [record.image_id for record in fit.records]
    assert len(ids) == 12 and sum(i.startswith("2012_") for i in ids) == 6
    by_id = {record.image_id: record for record in fit.records}
    for record in fit.records:
        folder = "VOC2012" if record.image_id.startswith("2012_") else "VOC2007"
        assert record.image_path.parents[1].name == folder
        twin = by_id[record.image_id.removeprefix("2012_")]  # the same image, other devkit
        assert (record.proposals.boxes == twin.proposals.boxes).all()
    provider = datamodule.proposals.for_split(datamodule.splits["fit"])
    for record in fit.records:  # each part's proposals from its own file
        file = "voc_2012_trainval" if record.image_id.startswith("2012_") else "voc_2007_trainval"
        assert f"{file}.mat[" in provider.source(record.image_id, record.image_path)
    test = datamodule.build_index(datamodule.splits["test"])
    assert test.has_boxes and all(r.image_path.parents[1].name == "VOC2007" for r in test.records)
    assert datamodule.class_names == ["circle", "square", "triangle", "cross"]


def test_voc2012_reads_the_2012_devkit_and_tests_for_the_server(voc0712_root: Path) -> None:
    cfg = _on("voc2012", voc0712_root)
    datamodule = hydra.utils.instantiate(cfg.data)
    fit, val, test = (
        datamodule.build_index(datamodule.splits[s]) for s in ("fit", "validate", "test")
    )
    assert len(fit) == 6 and len(test) == 4
    assert {r.image_id for r in val.records} < {r.image_id for r in fit.records}
    assert all(r.image_id.startswith("2012_") for r in (*fit.records, *test.records))
    assert fit.has_boxes and val.has_boxes  # val carries the curves
    assert not test.has_boxes  # no public annotations: no box metric, the server's files
    assert test.devkit_results == ("results/VOC2012/Main", "test")
    assert all(len(r.proposals) > 0 for r in test.records)  # from voc_2012_test.mat
