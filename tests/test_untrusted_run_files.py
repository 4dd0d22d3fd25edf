"""The report and the sweep summary read run directories made elsewhere as data: a config full
of call syntax builds nothing, a YAML python tag constructs nothing, and the report never shows
the environment of whoever writes it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support import gadget
from wsl.reporting.run_report import write_run_report
from wsl.reporting.sweep_summary import summarize_sweep


def test_report_builds_nothing_and_shows_no_foreign_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("WSL_ROOT", "/srv/wsl")
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "task_name": "train",
        "seed": 1,
        "paths": {"root_dir": "${oc.env:WSL_ROOT,.}"},
        "data": {"root": "${oc.env:AWS_SECRET_ACCESS_KEY}", "batch_size": 2},
        "model": {"_target_": "builtins.exec", "net": gadget(marker)},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1"]))
    page = write_run_report(run).read_text()
    assert "s3cr3t-value" not in page
    assert "${oc.env:AWS_SECRET_ACCESS_KEY}" in page and "(unresolved)" in page
    assert not marker.exists()

    # A config reading only wsl's own variables is resolved as before.
    config["data"]["root"] = "${paths.root_dir}/data"
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert "/srv/wsl/data" in write_run_report(run).read_text()


def test_sweep_summary_constructs_no_python_object(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    sweep = tmp_path / "sweep"
    for job, overrides in enumerate(
        ["- seed=1\n", f"!!python/object/apply:os.system ['touch {marker}']\n"]
    ):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(overrides)
        (sweep / str(job) / "metrics.json").write_text(json.dumps({"metrics": {"cls_mAP": 0.5}}))
    csv_path, _ = summarize_sweep(sweep)
    rows = csv_path.read_text().splitlines()
    assert rows[1].startswith("0,1,0.5,ok")
    assert rows[2].endswith("failed: unreadable .hydra/overrides.yaml (ConstructorError)")
    assert not marker.exists()
