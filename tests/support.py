"""What several test modules use: plain helpers and constants (the fixtures are in conftest.py).
Test modules import from here, never from each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import Tensor
from torchvision.models import alexnet

from wsl.data.proposals import MatProposalFiles

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
CLASSES = ["circle", "square", "triangle", "cross"]  # the generated set's classes.txt


# --- Configs and brief trainings -------------------------------------------------------------


def compose_cfg(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose like ``python -m wsl.<name>`` would, with the run directory set."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


# A quick run (conf/debug/fast.yaml: one epoch, no loggers or pictures, last.ckpt only) in
# batches of 8, as the session's localizer_ckpt (conftest.py) is trained.
FAST = ["debug=fast", "data.batch_size=8"]
# With two epochs: resuming from localizer_ckpt would train one more, so a check that must refuse
# the checkpoint before any work fails visibly if it does not.
FAST_RESUMABLE = [*FAST, "trainer.max_epochs=2"]


def train_checkpoint(root: Path, run_dir: Path, *extra: str) -> Path:
    """Train briefly on the generated set (:data:`FAST`, not tested); return the checkpoint."""
    from wsl.train import train  # imports Lightning: only when a test trains

    train(compose_cfg("train", [f"data.root={root}", *FAST, "test=false", *extra], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def check_boxes(entry: dict[str, Any], threshold: float, max_boxes: int) -> None:
    """Boxes inside the image, scores at least ``threshold`` and best first (an image's entry
    in ``wsl.predict``'s detections.json)."""
    detections = entry["detections"]
    assert 0 < len(detections) <= max_boxes
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True) and min(scores) >= threshold
    for d in detections:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= entry["width"] - 1 and 0 <= y1 <= y2 <= entry["height"] - 1
        assert d["class"] in CLASSES


# --- Commands, as the user runs them ---------------------------------------------------------


def module_argv(module: str, *overrides: str) -> list[str]:
    """The argument list of ``python -m <module> overrides...`` with this interpreter."""
    return [sys.executable, "-m", module, *overrides]


def command(
    module: str, *overrides: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> overrides...`` from the repository root; its output as text."""
    return subprocess.run(
        module_argv(module, *overrides),
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ERROR line of a command that failed on a user error, without a traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stdout
    return errors[0]


# A Localizer run to kill and resume (tests/test_resume.py, test_preemption.py): 24 generated
# trainval images in batches of 4, last.ckpt every 2 steps.
RESUMABLE_EPOCHS, STEPS_PER_EPOCH = 3, 6


def resumable_overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """``wsl.train``'s overrides for that run in ``run_dir``."""
    return [
        "experiment=localizer_demo", f"data.root={data_root}",
        "data.batch_size=4", "data.num_workers=0", "data.train_transform.scales=[64]",
        "data.eval_transform.scales=[64]", f"trainer.max_epochs={RESUMABLE_EPOCHS}",
        "logger=tensorboard", "callbacks.last_checkpoint.every_n_train_steps=2",
        "~callbacks.heatmaps", "trainer.enable_progress_bar=false", "test=false",
        f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


def resumable_training(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The argument list of ``python -m wsl.train`` for that run."""
    return module_argv("wsl.train", *resumable_overrides(data_root, run_dir, *extra))


def saved_step(path: Path) -> int:
    """The global step a checkpoint file was saved at."""
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


# --- Data, weights and configs made up for a test ---------------------------------------------


def proposals_config(root: Path) -> MatProposalFiles:
    """The generated set's selective-search ``.mat`` files (yxyx, as the authors' files)."""
    mat = str(root / "selective_search_data" / "voc_2007_{}.mat")
    return MatProposalFiles(mat.format("trainval"), mat.format("test"), box_layout="yxyx")


def small_alexnet_state() -> dict[str, Tensor]:
    """A random full AlexNet state dict whose fc weights are stride-0 views (a ~10 MB file)."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in alexnet().state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        if key.startswith("classifier") and len(shape) == 2:  # an fc weight: one value per row
            state[key] = torch.randn(shape[0], 1, generator=g).expand(shape)
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


def random_boxes(count: int, size: int, generator: torch.Generator) -> Tensor:
    """``count`` inclusive boxes inside a ``size`` x ``size`` image, at least 16 pixels wide."""
    corner = torch.randint(0, size - 32, (count, 2), generator=generator)
    extent = torch.randint(16, 32, (count, 2), generator=generator)
    return torch.cat([corner, corner + extent - 1], dim=1).float()


# WSDDN's spatial regulariser worked by hand. One image, two classes. Class 0: region 0 tops;
# IoUs with it (+1 pixels): region 1 90/100, region 2 0, region 3 90/100, region 4 60/100 (not
# above 0.6). Class 1: region 1 tops; IoUs with it: region 0 90/100 (score 0), region 2 0,
# region 3 81/99, region 4 60/90.
BOXES = torch.tensor(
    [[0, 0, 9, 9], [0, 0, 9, 8], [20, 20, 29, 29], [1, 0, 9, 9], [0, 0, 9, 5]], dtype=torch.float
)
SCORES = torch.tensor([[0.5, 0.0], [0.3, 0.8], [0.2, 0.6], [0.1, 0.4], [0.05, 0.2]])
FEATURES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 2.0], [9.0, 9.0]])
CLASS0 = 0.5 * 0.3**2 * 2 + 0.5 * 0.1**2 * 4  # regions 1 and 3 against region 0: 0.11
CLASS1 = 0.5 * 0.4**2 * 2 + 0.5 * 0.2**2 * (81 + 64)  # regions 3 and 4 against region 1: 3.06


def gadget(marker: Path) -> dict:
    """A config that, instantiated, writes ``marker`` (``pathlib.Path.write_text``)."""
    return {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "pwned"],
    }
