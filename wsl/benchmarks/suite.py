"""What ``python -m wsl.bench`` measures and how much: the work sizes of each device
(:data:`SIZES`) and the training-step rows (:func:`train_setups`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from wsl.benchmarks.training import TrainSetup
from wsl.models.supervised import MODES

NUM_CLASSES = 20


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    scale: int  # shorter image side (training step and loader)
    proposals: int  # per image, at most
    batch_size: int  # the project's step and the loader
    train_images: int  # per timed pass of the training step
    timed_passes: int
    loader_images: int  # in the generated data set
    loader_image_size: int  # its longest possible image side, before resizing to ``scale``
    loader_epochs: int  # timed
    eval_images: int
    eval_detections: int  # per image
    eval_subset: int  # images the plain AP loop is timed on


SIZES = {
    "cuda": Sizes(
        scale=600, proposals=2000, batch_size=8, train_images=32, timed_passes=3,
        loader_images=64, loader_image_size=500, loader_epochs=2,
        eval_images=5000, eval_detections=300, eval_subset=500,
    ),
    "cpu": Sizes(
        scale=400, proposals=300, batch_size=4, train_images=4, timed_passes=2,
        loader_images=32, loader_image_size=500, loader_epochs=2,
        eval_images=5000, eval_detections=300, eval_subset=500,
    ),
    "quick": Sizes(
        scale=96, proposals=16, batch_size=2, train_images=2, timed_passes=1,
        loader_images=4, loader_image_size=96, loader_epochs=1,
        eval_images=100, eval_detections=30, eval_subset=20,
    ),
}  # fmt: skip


def train_setups(device: str, batch_size: int) -> list[TrainSetup]:
    """The plain baseline first, then the project's WSDDN step (its last row is the one the
    loader is compared with), then OICR's, PCL's and MIST's step with the same options, then the
    second stage's Fast R-CNN and Faster R-CNN step, then that WSDDN step on VGG16 at stride 16
    and at stride 8 (the OICR/PCL body)."""
    plain = TrainSetup("plain b=1 fp32", plain=True)
    if device == "cpu":
        wsddn = [TrainSetup(f"wsl b={batch_size} fp32", plain=False, batch_size=batch_size)]
    else:
        options = {"batch_size": batch_size, "channels_last": True, "cudnn_benchmark": True}
        wsddn = [
            TrainSetup(f"wsl b={batch_size} fp32", plain=False, **options),
            TrainSetup(f"wsl b={batch_size} bf16", plain=False, bf16=True, **options),
        ]
    project = wsddn[-1]
    refinement = [
        replace(project, name=project.name.replace("wsl", method, 1), refinement=method)
        for method in ("oicr", "pcl", "mist")
    ]
    detectors = [
        replace(project, name=project.name.replace("wsl", mode, 1), detector=mode) for mode in MODES
    ]
    vgg16 = [
        replace(project, name=project.name.replace("wsl", "wsl vgg16 s16", 1), backbone="vgg16"),
        replace(
            project,
            name=project.name.replace("wsl", "wsl vgg16 s8", 1),
            backbone="vgg16_dilated",
            freeze_blocks=2,
        ),
    ]
    return [plain, *wsddn, *refinement, *detectors, *vgg16]
