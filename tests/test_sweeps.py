"""Sweeps: the summary of a sweep dir, real sweeps (basic and Optuna), the SLURM launcher and
the DDP trainer configs compose."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationValidationError
from pytorch_lightning.strategies import DDPStrategy

from tests.support import CONF_DIR, compose_cfg
from wsl.data.generate import generate_voc
from wsl.reporting.sweep_summary import SweepSummary, main, summarize_sweep
from wsl.train import main as train_main

ROOT = CONF_DIR.parent
FAST = ["experiment=localizer_demo", "debug=fast"]  # each job: one epoch, no pictures


def make_job(sweep: Path, num: int, overrides: list[str] | None, metrics: str | None) -> None:
    """A job dir as Hydra and ``wsl.train`` leave it (``None``: that file is missing)."""
    job = sweep / str(num)
    job.mkdir(parents=True)
    if overrides is not None:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(metrics)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def md_rows(path: Path) -> list[list[str]]:
    """The cells of a Markdown table, header first, the ``---`` line checked and left out."""
    lines = path.read_text().splitlines()
    assert set(lines[1].strip("| ").split(" | ")) == {"---"}
    return [line[2:-2].split(" | ") for line in [lines[0], *lines[2:]]]


@pytest.fixture
def handmade_sweep(tmp_path: Path) -> Path:
    """Jobs 0 and 10 finished, 1 failed before testing, 2 left a broken metrics.json and
    lost its overrides; a ``.submitit`` folder and an old summary are not jobs."""
    sweep = tmp_path / "sweep"
    lr0, lr1 = ["model.optimizer.lr=0.01", "+x=a|b"], ["model.optimizer.lr=0.001"]
    make_job(sweep, 10, lr1, json.dumps({"metrics": {"cls_mAP": 0.5, "CorLoc": None}}))
    make_job(
        sweep, 0, lr0, json.dumps({"metrics": {"cls_mAP": 0.123456789012345}, "per_class": {}})
    )
    make_job(sweep, 1, ["model.optimizer.lr=-1"], None)
    make_job(sweep, 2, None, "{not json")
    (sweep / ".submitit").mkdir()
    (sweep / "summary.csv").write_text("stale\n")
    return sweep


def test_summary_has_a_row_per_job_by_number(handmade_sweep: Path) -> None:
    csv_path, md_path = summarize_sweep(handmade_sweep)
    assert (csv_path, md_path) == (handmade_sweep / "summary.csv", handmade_sweep / "summary.md")
    rows = read_csv(csv_path)
    header = ["job", "model.optimizer.lr", "+x", "cls_mAP", "CorLoc", "status"]
    assert list(rows[0]) == header
    assert [list(row.values()) for row in rows] == [
        ["0", "0.01", "a|b", "0.123456789012345", "", "ok"],
        ["1", "-1", "", "", "", "failed: no metrics.json"],
        ["2", "", "", "", "", rows[2]["status"]],
        ["10", "0.001", "", "0.5", "", "ok"],
    ]
    assert rows[2]["status"].startswith("failed: unreadable metrics.json (JSONDecodeError")
    md = md_rows(md_path)
    assert md[0] == header
    assert md[1] == ["0", "0.01", r"a\|b", "0.1235", "", "ok"]  # 4 significant digits
    assert [row[0] for row in md[1:]] == ["0", "1", "2", "10"]


@pytest.mark.parametrize("end", ["job", "multirun"])
@pytest.mark.parametrize("mode", [RunMode.RUN, RunMode.MULTIRUN])
def test_callback_summarizes_sweeps_only(handmade_sweep: Path, end: str, mode: RunMode) -> None:
    (handmade_sweep / "summary.csv").unlink()
    config = OmegaConf.create({"hydra": {"mode": mode, "sweep": {"dir": str(handmade_sweep)}}})
    if end == "job":
        SweepSummary().on_job_end(config, job_return=JobReturn())
    else:
        SweepSummary().on_multirun_end(config)
    written = (handmade_sweep / "summary.csv").exists()
    assert written == (mode == RunMode.MULTIRUN or end == "multirun")
    assert not written or len(read_csv(handmade_sweep / "summary.csv")) == 4


def test_command_line(handmade_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(handmade_sweep)])
    assert capsys.readouterr().out.split() == [
        str(handmade_sweep / "summary.csv"),
        str(handmade_sweep / "summary.md"),
    ]
    with pytest.raises(SystemExit):
        main([str(handmade_sweep / "nope")])
    assert "is not a directory" in capsys.readouterr().err


def test_train_returns_the_optimized_metric(generated_root: Path, tmp_path: Path) -> None:
    data = [f"data.root={generated_root}", "logger=none"]  # no model: checks the data only
    assert train_main(compose_cfg("train", data, tmp_path)) is None
    cfg = compose_cfg("train", [*data, "optimized_metric=images/test"], tmp_path)
    assert train_main(cfg) == 12
    cfg = compose_cfg("train", [*data, "optimized_metric=nope"], tmp_path)
    with pytest.raises(ValueError, match=r"optimized_metric='nope'.*images/fit"):
        train_main(cfg)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    generate_voc(root, num_trainval=16, num_test=8, proposals_per_image=10)
    return root


def run_train(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wsl.train", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def job_metrics(sweep: Path, job: str) -> dict[str, float]:
    return json.loads((sweep / job / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_sweep_writes_a_summary(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", *FAST, "model.optimizer.lr=1e-2,1e-3", f"data.root={tiny_root}",
        "logger=tensorboard", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {sweep / 'summary.csv'}" in result.stdout
    rows = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["model.optimizer.lr"], r["status"]) for r in rows] == [
        ("0", "0.01", "ok"),
        ("1", "0.001", "ok"),
    ]
    md = md_rows(sweep / "summary.md")
    for row, md_row in zip(rows, md[1:], strict=True):
        metrics = job_metrics(sweep, row["job"])
        assert float(row["cls_mAP"]) == metrics["cls_mAP"] and 0 <= metrics["cls_mAP"] <= 1
        assert {name: row[name] for name in metrics} == {
            name: "" if value is None else repr(value) for name, value in metrics.items()
        }
        assert md_row[-1] == row["status"]
        assert float(md_row[md[0].index("cls_mAP")]) == pytest.approx(metrics["cls_mAP"], rel=1e-3)
    assert md[0] == list(rows[0])


@pytest.mark.slow
def test_failed_sweep_still_has_a_summary(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", *FAST, "model.optimizer.lr=-1", f"data.root={tiny_root}", "logger=none",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "model.optimizer.lr=-1 is not allowed: it must be a number > 0" in result.stderr
    rows = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["model.optimizer.lr"], r["status"]) for r in rows] == [
        ("0", "-1", "failed: no metrics.json")
    ]


def compose_hydra(overrides: list[str]) -> DictConfig:
    """The root config with its ``hydra`` node, as ``python -m wsl.train -m ...`` composes it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_optuna_search_composes() -> None:
    cfg = compose_hydra(["experiment=localizer_demo", "hparams_search=localizer_optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert (sweeper.direction, sweeper.n_trials, sweeper.sampler.seed) == ("maximize", 20, 42)
    assert dict(sweeper.params) == {
        "model.optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.net.pooling": "choice(max, avg, lse, topk)",
    }
    assert cfg.optimized_metric == "cls_mAP"
    assert (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split) == (
        "train",
        "val",
        "val",
    )


@pytest.mark.slow
def test_optuna_search_finds_the_best_trial(tiny_root: Path, tmp_path: Path) -> None:
    sweep, db = tmp_path / "sweep", tmp_path / "study.db"
    result = run_train(
        "-m", *FAST, "hparams_search=localizer_optuna", "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage=sqlite:///{db}", f"data.root={tiny_root}", "logger=none",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    values = {r["job"]: job_metrics(sweep, r["job"])["cls_mAP"] for r in rows}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best_job = max(values, key=values.__getitem__)
    assert best["best_value"] == values[best_job]
    best_row = rows[int(best_job)]
    assert best["best_params"]["model.net.pooling"] == best_row["model.net.pooling"]
    assert best["best_params"]["model.optimizer.lr"] == float(best_row["model.optimizer.lr"])
    for row in rows:
        assert row["model.net.pooling"] in {"max", "avg", "lse", "topk"}
        assert 1e-4 <= float(row["model.optimizer.lr"]) <= 1e-1
    with sqlite3.connect(db) as connection:
        stored = connection.execute(
            "SELECT state, value FROM trials JOIN trial_values USING (trial_id) ORDER BY number"
        ).fetchall()
    assert stored == [("COMPLETE", values["0"]), ("COMPLETE", values["1"])]


def test_slurm_launcher_follows_the_trainer() -> None:
    cfg = compose_hydra(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
         "hydra.launcher.partition=gpu"]
    )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    fields = ("partition", "nodes", "tasks_per_node", "gpus_per_node", "mem_gb", "timeout_min")
    assert [launcher[name] for name in fields] == ["gpu", 2, 4, 4, 64, 1440]
    built = instantiate(launcher)
    assert built.params["tasks_per_node"] == 4 and built.params["nodes"] == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ddp", {"strategy": "ddp", "accelerator": "gpu", "precision": "bf16-mixed"}),
        ("ddp_sweep", {"strategy": "ddp_spawn", "accelerator": "gpu", "precision": "bf16-mixed"}),
        ("ddp_cpu", {"strategy": "ddp", "accelerator": "cpu", "devices": 2, "num_nodes": 1}),
    ],
)
def test_ddp_trainer_configs_compose(name: str, expected: dict[str, object]) -> None:
    trainer = compose_hydra([f"trainer={name}"]).trainer
    assert {key: trainer[key] for key in expected} == expected
    assert trainer.use_distributed_sampler is True


def test_slurm_launcher_needs_a_number_of_gpus() -> None:
    cfg = compose_hydra(["hydra/launcher=slurm", "trainer=ddp"])
    assert cfg.trainer.devices == "auto"
    with pytest.raises(InterpolationValidationError, match=r"trainer\.devices"):
        instantiate(cfg.hydra.launcher)


@pytest.mark.parametrize(
    ("overrides", "launcher"),
    [
        (["trainer=ddp_cpu"], "_SubprocessScriptLauncher"),
        (["trainer=ddp_sweep", "trainer.accelerator=cpu", "trainer.devices=2",
          "trainer.precision=32-true"], "_MultiProcessingLauncher"),
    ],
)  # fmt: skip
def test_ddp_trainers_build_on_cpu(overrides: list[str], launcher: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", overrides, tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.num_devices == 2 and trainer.world_size == 2
    assert type(trainer.strategy.launcher).__name__ == launcher
    assert trainer.strategy._get_process_group_backend() == "gloo"
