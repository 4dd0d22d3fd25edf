"""OICR's and PCL's optimizer as their authors' code: biases at 2x the learning rate without
weight decay, the weight decay doubled with the halved learning rate, pcl.pytorch's linear
warm-up (a ChainedScheduler of LinearLR and MultiStepLR, built and stored safely)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from tests.support import compose_cfg
from wsl.runtime.stored_config import UntrustedConfigError, check_stored_config
from wsl.train import train
from wsl.training.module import WSLModule, build_scheduler

CLASSES = ["a", "b", "c"]


def paper_module(experiment: str, tmp_path: Path, *extra: str) -> tuple[Any, WSLModule]:
    chosen = [f"experiment={experiment}"] if experiment else ["model=oicr"]
    cfg = compose_cfg("train", [*chosen, "model.net.weights=none", *extra], tmp_path)
    return cfg, hydra.utils.instantiate(cfg.model, class_names=CLASSES)


@pytest.mark.parametrize(
    ("experiment", "lrs"),
    # base lr 5e-4: weights, biases 2x; the streams' weights and biases (OICR: 10x and 20x,
    # Caffe ic_score* lr_mult; PCL: 1x and pcl.pytorch's 2x on every bias)
    [("oicr", [5e-4, 1e-3, 5e-3, 1e-2]), ("pcl", [5e-4, 1e-3, 5e-4, 1e-3])],
)
def test_biases_at_twice_the_learning_rate_without_weight_decay(
    experiment: str, lrs: list[float], tmp_path: Path
) -> None:
    _, module = paper_module(experiment, tmp_path)
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["initial_lr"] for g in groups] == pytest.approx(lrs)
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0, 1e-3, 0.0]
    # AlexNet's trained biases outside the streams: conv2-conv5 (conv1 frozen), fc6, fc7, fc8c, fc8d
    assert len(groups[1]["params"]) == 8
    assert all(p.ndim == 1 for p in groups[1]["params"] + groups[3]["params"])
    assert all(p.ndim == 2 or p.ndim == 4 for p in groups[0]["params"] + groups[2]["params"])
    assert len(groups[3]["params"]) == 3  # one bias per stream


def test_the_default_is_one_learning_rate(tmp_path: Path) -> None:
    """model=oicr alone (as WSDDN's configs): one group for WSDDN's parameters, as before."""
    _, module = paper_module("", tmp_path)
    groups = module.parameter_groups()
    assert module.hparams.bias_lr_mult == 1.0 and len(groups) == 3  # WSDDN's, the streams' two
    assert "lr" not in groups[0] and groups[1]["lr"] == groups[2]["lr"] == 1e-5


def scheduled_lrs(config: Any, steps: list[int]) -> list[float]:
    """The learning rate of a one-group SGD at lr 5e-4 after each of ``steps`` scheduler steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=5e-4)
    scheduler = build_scheduler(OmegaConf.to_container(config), optimizer)
    lrs, done = [], 0
    for step in steps:
        for _ in range(step - done):
            optimizer.step()
            scheduler.step()
        done = step
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_pcl_warms_up_linearly_from_a_third_over_500_iterations(tmp_path: Path) -> None:
    cfg, _ = paper_module("pcl", tmp_path)
    assert cfg.model.scheduler_interval == "step"
    # train_net_step.py: lr = 5e-4 (1/3 (1 - t/500) + t/500) for t < 500, then x0.1 at 35000
    got = scheduled_lrs(cfg.model.scheduler, [0, 1, 250, 499, 500, 34999, 35000, 49999])
    expected = [5e-4 / 3, 5e-4 * (1 / 3 * (1 - 1 / 500) + 1 / 500), 5e-4 * 2 / 3,
                5e-4 * (1 / 3 / 500 + 499 / 500), 5e-4, 5e-4, 5e-5, 5e-5]  # fmt: skip
    assert got == pytest.approx(expected, rel=1e-9)


def test_oicr_does_not_warm_up(tmp_path: Path) -> None:
    """Caffe OICR: lr_policy step (solver.prototxt), no warm-up."""
    cfg, _ = paper_module("oicr", tmp_path)
    assert cfg.model.scheduler._target_ == "torch.optim.lr_scheduler.MultiStepLR"
    assert scheduled_lrs(cfg.model.scheduler, [0, 39999, 40000]) == pytest.approx(
        [5e-4, 5e-4, 5e-5]
    )


def test_the_bias_group_warms_up_with_the_rest(tmp_path: Path) -> None:
    _, module = paper_module("pcl", tmp_path)
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([5e-4 / 3, 1e-3 / 3, 5e-4 / 3, 1e-3 / 3])


def test_bias_lr_mult_is_checked(tmp_path: Path) -> None:
    with pytest.raises(
        InstantiationException, match=r"model\.bias_lr_mult must be positive, got 0"
    ):
        paper_module("pcl", tmp_path, "model.bias_lr_mult=0")


def chained(child: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"scheduler": {
        "_target_": "torch.optim.lr_scheduler.ChainedScheduler", "schedulers": [child],
    }}}  # fmt: skip


def test_a_stored_chained_scheduler_names_only_numeric_schedulers() -> None:
    check_stored_config(chained({"_target_": "torch.optim.lr_scheduler.LinearLR"}))
    for target in ("torch.optim.lr_scheduler.LambdaLR", "builtins.eval",
                   "torch.optim.lr_scheduler.ChainedScheduler"):  # fmt: skip
        with pytest.raises(UntrustedConfigError, match=r"model.scheduler.schedulers\[0\]"):
            check_stored_config(chained({"_target_": target}))


WARM_THEN_STEP = (
    "model.scheduler={_target_:torch.optim.lr_scheduler.ChainedScheduler,schedulers:["
    "{_target_:torch.optim.lr_scheduler.LinearLR,start_factor:0.5,total_iters:2},"
    "{_target_:torch.optim.lr_scheduler.MultiStepLR,milestones:[4],gamma:0.1}]}"
)


@pytest.mark.slow  # two training runs (18 s); make test resumes other runs in test_resume_checks
def test_a_checkpoint_with_a_chained_scheduler_resumes_its_schedule(
    generated_root: Path, tmp_path: Path
) -> None:
    """24 images in batches of 8: 3 steps, then resumed to 6. Adam at lr 1e-4, warm-up
    x0.5 -> x1 over 2 steps, x0.1 from step 4: lr 1e-4 after 3 steps, 1e-5 after 6 (a schedule
    restarted at the resume would still give 1e-4)."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    overrides = [
        "experiment=pcl_demo", f"data.root={generated_root}", "data.num_workers=0",
        "logger=[]", "trainer.enable_progress_bar=false", "test=false", "trainer.max_epochs=-1",
        "+trainer.limit_val_batches=0", "model.scheduler_interval=step", WARM_THEN_STEP,
        "callbacks.periodic_evaluation=null", "callbacks.box_pictures=null",
    ]  # fmt: skip
    train(compose_cfg("train", [*overrides, "trainer.max_steps=3"], run))
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    train(compose_cfg("train", [*overrides, "trainer.max_steps=6", f"ckpt_path={last}"], run))
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 6
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert [s["last_epoch"] for s in state["lr_schedulers"][0]["_schedulers"]] == [6, 6]
