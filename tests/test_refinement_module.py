"""OICR and PCL as WSDDN plus a refinement head: the training step adds the K stream losses to
WSDDN's, detect ranks the refined scores, the optimizer groups carry the streams' learning-rate
factors, and a trained checkpoint goes through ``python -m wsl.evaluate`` (safe loading) with its
metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from tests.support import command, compose_cfg
from wsl.benchmarks.stream_scores import score_checkpoint
from wsl.benchmarks.training import TrainSetup, TrainWork, measure_training
from wsl.data.generate import generate_voc
from wsl.drawing import draw_boxes
from wsl.evaluation.results_files import read_results
from wsl.inference.regions import region_detections
from wsl.models.refinement import RefinementHeads, refined_region_scores
from wsl.models.wsddn import wsddn_loss
from wsl.pseudo_labels.losses import stream_losses
from wsl.structures.boxes import boxes_to_original
from wsl.structures.detections import Detections
from wsl.train import train
from wsl.training.loss_scale import sum_over_global_batch
from wsl.training.module import WSLModule


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refine_data")
    generate_voc(root, seed=3, num_trainval=12, num_test=4, proposals_per_image=12)
    return root


def demo(method: str, root: Path, *extra: str) -> list[str]:
    return [
        f"experiment={method}_demo", f"data.root={root}", "data.num_workers=0",
        "data.test_split=trainval", "data.val_split=test", "trainer.enable_progress_bar=false",
        "logger=[]", *extra,
    ]  # fmt: skip


def batch_and_module(
    method: str, root: Path, tmp_path: Path, *overrides: str
) -> tuple[dict[str, Any], WSLModule]:
    cfg = compose_cfg("train", demo(method, root, *overrides), tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data, batch_size=3)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names)
    with torch.no_grad():  # untrained scores that clearly depend on the pixels
        module.net.fc8c.weight.mul_(100)
        module.net.fc8d.weight.mul_(100)
        for stream in module.net.refinement.streams:
            stream.weight.mul_(100)
    return batch, module


def detections_of(
    module: WSLModule, batch: dict[str, Any], scores: torch.Tensor
) -> list[Detections]:
    """Each image's proposals, in pixels of the image on disk, scored by ``scores`` (R, C)."""
    counts = [len(p) for p in batch["proposals"]]
    return [
        region_detections(
            boxes_to_original(p.float(), size, original), s, module.net.detection_config
        )
        for p, s, size, original in zip(
            batch["proposals"], scores.split(counts), batch["input_size"],
            batch["original_size"], strict=True,
        )
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize(
    ("method", "bg_threshold", "reduction"),
    [("oicr", 0.1, None), ("pcl", 0.1, None), ("oicr", 0.0, None), ("pcl", 0.1, "sum")],
)
def test_training_step_is_wsddn_plus_the_sum_of_the_stream_losses(
    method: str, bg_threshold: float, reduction: str | None, tiny_root: Path, tmp_path: Path
) -> None:
    """The authors' objective: the MIL BCE averaged over the C classes (the configs' ``mean``;
    ``sum`` is WSDDN's C x that) plus the sum of the streams' losses."""
    overrides = [f"model.net.refinement.bg_threshold={bg_threshold}"]
    if reduction:
        overrides.append(f"model.net.mil_class_reduction={reduction}")
    batch, module = batch_and_module(method, tiny_root, tmp_path, *overrides)
    assert isinstance(module.net.refinement, RefinementHeads)
    assert module.net.refinement.method == method
    module.eval()  # no dropout: the same forward twice
    with torch.no_grad():
        got = module.training_step(batch, 0)
        output = module.net(batch["image"], batch["proposals"])
        mil = wsddn_loss(output.image_scores, batch["labels"], batch["label_weights"])
        wsddn = batch["labels"].shape[1] * mil if reduction == "sum" else mil
        streams = stream_losses(
            method, torch.cat(batch["proposals"]), output.region_image, output.region_scores,
            module.net.refinement(output.features), batch["labels"], bg_threshold,
        )  # fmt: skip
        other = stream_losses(
            method, torch.cat(batch["proposals"]), output.region_image, output.region_scores,
            module.net.refinement(output.features), batch["labels"], 0.1 - bg_threshold,
        )  # fmt: skip
    assert not torch.allclose(streams, other)  # the batch has far proposals: bg_threshold counts
    assert streams.shape == (3,) and (streams > 0).all()
    expected = sum_over_global_batch(wsddn + streams.sum(), 3, None)
    torch.testing.assert_close(got, expected)


def test_detect_ranks_the_mean_of_the_streams(tiny_root: Path, tmp_path: Path) -> None:
    batch, module = batch_and_module("oicr", tiny_root, tmp_path)
    module.eval()
    with torch.no_grad():
        output = module.net(batch["image"], batch["proposals"])
        refined = refined_region_scores(module.net.refinement(output.features))
    expected = detections_of(module, batch, refined)
    wsddn = detections_of(module, batch, output.region_scores)
    for got, want, other in zip(module.detect(batch), expected, wsddn, strict=True):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
        assert not torch.allclose(got[1][:5], other[1][:5])  # not WSDDN's scores


def test_streams_get_their_learning_rate_factors_and_step_scheduler(
    tiny_root: Path, tmp_path: Path
) -> None:
    _, module = batch_and_module(
        "oicr", tiny_root, tmp_path, "model.net.refinement.lr_mult=10.0",
        "model.net.refinement.bias_lr_mult=20.0", "model.scheduler_interval=step",
        "model.bias_weight_decay=false",
        "model.scheduler={_target_:torch.optim.lr_scheduler.MultiStepLR,milestones:[4]}",
    )  # fmt: skip
    configured = module.configure_optimizers()
    assert configured["lr_scheduler"]["interval"] == "step"
    groups = configured["optimizer"].param_groups
    refinement = {id(p) for p in module.net.refinement.parameters()}
    weights = [s.weight for s in module.net.refinement.streams]
    biases = [s.bias for s in module.net.refinement.streams]
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-4, 1e-3, 2e-3])
    assert [g["weight_decay"] for g in groups][1::2] == [0.0, 0.0]  # the two bias groups
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in weights}
    assert {id(p) for p in groups[3]["params"]} == {id(p) for p in biases}
    assert not refinement & {id(p) for g in groups[:2] for p in g["params"]}
    total = sum(len(g["params"]) for g in groups)
    assert total == len([p for p in module.parameters() if p.requires_grad])


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown refinement method 'wsddn'"):
        RefinementHeads(16, 2, method="wsddn")


@pytest.mark.parametrize("method", ["oicr", pytest.param("pcl", marks=pytest.mark.slow)])
def test_checkpoint_goes_through_wsl_evaluate(method: str, tiny_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = train(compose_cfg("train", demo(method, tiny_root, "trainer.max_epochs=1"), run))
    out = tmp_path / "evaluated"
    result = command(
        "wsl.evaluate", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data.split=trainval",
        "data.num_workers=0", "logger=[]", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluated = read_results(out)["metrics"]
    assert evaluated == pytest.approx(trained, abs=1e-6, nan_ok=True)
    # each score source alone (wsl.benchmarks.stream_scores): "detections" is what was tested
    by_source = score_checkpoint(run / "checkpoints" / "last.ckpt", ["trainval"])["trainval"]
    assert list(by_source) == ["WSDDN", "stream 1", "stream 2", "stream 3", "detections"]
    assert by_source["detections"]["det_mAP"] == pytest.approx(trained["det_mAP"], abs=1e-6)
    assert by_source["detections"]["CorLoc"] == pytest.approx(trained["CorLoc"], abs=1e-6)
    assert len({by_source[name]["det_mAP"] for name in by_source}) > 1  # the sources differ


@pytest.mark.parametrize(
    ("experiment", "method", "backbone", "milestone", "steps", "lr_mult", "dropout"),
    [("oicr", "oicr", "alexnet", 40000, 70000, 10.0, 0.5),
     ("oicr_vgg16", "oicr", "vgg16_dilated", 40000, 70000, 10.0, 0.5),
     ("pcl", "pcl", "alexnet", 35000, 50000, 1.0, 0.0),
     ("pcl_vgg16", "pcl", "vgg16_dilated", 35000, 50000, 1.0, 0.0)],
)  # fmt: skip
def test_paper_experiments_compose_with_the_authors_settings(
    experiment: str, method: str, backbone: str, milestone: int, steps: int, lr_mult: float,
    dropout: float, tmp_path: Path,
) -> None:  # fmt: skip
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    model = cfg.model
    refinement = model.net.refinement
    assert model._target_ == "wsl.training.module.WSLModule"
    assert refinement._target_ == "wsl.models.refinement.RefinementHeads"
    assert (refinement.method, refinement.num_streams, model.net.backbone) == (method, 3, backbone)
    # conv1_x and conv2_x fixed with the stride-8 body (Caffe lr_mult 0; pcl.pytorch FREEZE_AT 2)
    assert model.net.get("freeze_blocks", 0) == (2 if backbone == "vgg16_dilated" else 0)
    # pcl.pytorch's warm-up then steps (a ChainedScheduler); Caffe OICR's steps alone
    steps_config = model.scheduler.schedulers[-1] if method == "pcl" else model.scheduler
    assert steps_config.milestones == [milestone] and model.scheduler_interval == "step"
    assert cfg.trainer.max_steps == steps and cfg.data.batch_size == 2
    assert cfg.data.difficult_labels == "negative"  # both codes drop difficult objects
    # lr halved for the summed batch of 2, so the weight decay doubles (lr * wd as the authors')
    assert model.optimizer.lr == 5e-4 and model.optimizer.weight_decay == 1e-3
    assert (model.bias_lr_mult, model.bias_weight_decay) == (2.0, False)  # lr_mult 2, decay 0
    assert (refinement.lr_mult, model.net.dropout) == (lr_mult, dropout)
    # Caffe OICR's layer: all of IoU < 0.5 weighted background; pcl.pytorch: BG_THRESH 0.1
    assert refinement.bg_threshold == (0.0 if method == "oicr" else 0.1)
    assert model.net.inference.nms_iou == 0.3
    tta = model.net.tta
    assert list(tta.scales) == [480, 576, 688, 864, 1200] and tta.flip
    # both codes test at the LONGER side; pcl.pytorch trains on it too, Caffe OICR on the shorter
    assert (tta.resize, tta.max_size) == ("longest_side", None)
    train_resize = "longest_side" if method == "pcl" else "shortest_side"
    assert cfg.data.train_transform.resize == train_resize


@pytest.mark.parametrize("method", ["oicr", "pcl", "mist"])
def test_training_benchmark_times_the_refinement_step(method: str) -> None:
    work = TrainWork(device="cpu", scale=64, proposals=10, images=2, timed_passes=1, num_classes=3)
    setup = TrainSetup(method, plain=False, batch_size=2, refinement=method)
    result = measure_training(setup, work)
    assert result.images_per_s > 0 and len(result.pass_images_per_s) == 1


def test_detections_by_source_are_wsddns_and_the_last_streams(
    tiny_root: Path, tmp_path: Path
) -> None:
    batch, module = batch_and_module("pcl", tiny_root, tmp_path)
    by_source = module.detections_by_source(batch)
    assert list(by_source) == ["WSDDN", "refinement stream 3"]
    module.eval()
    with torch.no_grad():
        output = module.net(batch["image"], batch["proposals"])
        last = module.net.refinement(output.features)[-1][:, 1:]
    counts = [len(p) for p in batch["proposals"]]
    for name, scores in (("WSDDN", output.region_scores), ("refinement stream 3", last)):
        expected = detections_of(module, batch, scores)
        for got, want in zip(by_source[name], expected, strict=True):
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w)
    # each image's best detection of a source is its best region score of that source
    last_stream = by_source["refinement stream 3"]
    for image_scores, (_, found, _) in zip(last.split(counts), last_stream, strict=True):
        assert found[0].item() == pytest.approx(image_scores.max().item())


def test_test_classification_uses_wsddns_image_scores(tiny_root: Path, tmp_path: Path) -> None:
    """The streams' scores are per-region softmaxes; their sum over regions is no image score."""
    batch, module = batch_and_module("oicr", tiny_root, tmp_path)
    module.eval()
    with torch.no_grad():
        output = module.net(batch["image"], batch["proposals"])
        by_source, image_scores = module.net.view_scores(batch)
    region_scores = by_source["model"][0]
    torch.testing.assert_close(image_scores, output.image_scores)
    summed = torch.stack([s.sum(dim=0) for s in region_scores])
    assert (summed - image_scores).abs().max() > 0.1  # the refined scores would differ


def test_box_pictures_show_wsddn_beside_the_last_stream(tiny_root: Path, tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    extra = (
        "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "test=false",
        "callbacks.periodic_evaluation=null", "callbacks.histograms=null",
        "callbacks.box_pictures.num_images=2", f"callbacks.box_pictures.output_dir={pictures}",
    )  # fmt: skip
    train(compose_cfg("train", demo("oicr", tiny_root, *extra), tmp_path / "run"))
    files = sorted((pictures / "boxes" / "test").rglob("*.png"))
    assert len(files) == 4  # 2 images, untrained and trained
    for file in files:
        with Image.open(file) as opened:
            picture = np.asarray(opened.convert("RGB"))
        image_id = file.stem
        with Image.open(tiny_root / "VOCdevkit/VOC2007/JPEGImages" / f"{image_id}.jpg") as image:
            panel = draw_boxes(torch.zeros(3, image.height, image.width), torch.zeros(0, 4))
        height, width = panel.shape[-2:]
        assert picture.shape[:2] == (height + 30, 2 * width + 12)  # titles above, a gap between
        assert (picture[30:, width : width + 12] == 255).all()  # the gap is white
        for left in (0, width + 12):  # each title band holds dark text on white
            band = picture[:30, left : left + width]
            assert (band < 100).all(axis=-1).any() and (band == 255).all(axis=-1).mean() > 0.8


def test_stream_scores_detects_every_source_as_detect_does(tiny_root: Path, tmp_path: Path) -> None:
    """One forward pass per view for all sources gives what ``detect`` gives for each alone."""
    batch, module = batch_and_module("oicr", tiny_root, tmp_path)
    sources = module.net.score_sources()
    assert sources == ["WSDDN", "stream 1", "stream 2", "stream 3", "model"]
    module.eval()
    with torch.no_grad():
        got = module.net.detections_by_source(batch, sources)
        output = module.net(batch["image"], batch["proposals"])
        streams = module.net.refinement(output.features)
    alone = {
        "WSDDN": output.region_scores,
        **{f"stream {k + 1}": p[:, 1:] for k, p in enumerate(streams)},
        "model": refined_region_scores(streams),
    }
    for name, scores in alone.items():
        for image, want in zip(got[name], detections_of(module, batch, scores), strict=True):
            for g, w in zip(image, want, strict=True):
                torch.testing.assert_close(g, w)
    for image, want in zip(got["model"], module.detect(batch), strict=True):
        for g, w in zip(image, want, strict=True):
            torch.testing.assert_close(g, w)
