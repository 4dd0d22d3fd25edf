"""Preemption and shared run directories lose nothing: SIGTERM saves the current step, says
so, exits 143 and resumes from there; SLURM's requeue signal requeues through Lightning; a
second run in a directory in use is refused; a full disk is one line with the old checkpoint
intact."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support import (
    ROOT,
    STEPS_PER_EPOCH,
    compose_cfg,
    resumable_overrides,
    resumable_training,
    saved_step,
)
from wsl.checkpoint import CheckpointError, RunCheckpointIO
from wsl.runtime.run_dir import RunDirError
from wsl.runtime.run_lock import LOCK_NAME, run_dir_lock
from wsl.train import resolve_ckpt_path, train

# Every step in the log (to know when to signal), no periodic last.ckpt (so the one saved on
# SIGTERM is the only one mid-epoch), images large enough that a step takes a while.
SLOWER = [
    "callbacks.progress_log.every_n_steps=1",
    "callbacks.last_checkpoint.every_n_train_steps=1000",
    "data.train_transform.scales=[224]",
]
LONG = "trainer.max_epochs=100"  # still running when signalled (finish: max_steps)


def start(data_root: Path, run_dir: Path, *extra: str, env: dict | None = None):
    return subprocess.Popen(
        resumable_training(data_root, run_dir, *SLOWER, *extra), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def wait_mid_epoch(run_dir: Path, process: subprocess.Popen, after: int = 0) -> int:
    """Until the run's log shows an optimizer step past ``after`` that is the second of an
    epoch (so a signal now stops it mid-epoch, not during validation); return the step."""
    log = run_dir / "train.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        steps = (
            [int(s) for s in re.findall(r" step (\d+)/", log.read_text())] if log.is_file() else []
        )
        if steps and steps[-1] > after and steps[-1] % STEPS_PER_EPOCH == 2:
            return steps[-1]
        time.sleep(0.01)
    raise AssertionError(f"the run did not reach a second step of an epoch: {process.poll()}")


def test_sigterm_saves_the_step_exits_143_and_resumes(generated_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    first = start(generated_root, run_dir, LONG)
    wait_mid_epoch(run_dir, first)

    # A second run in the same directory is refused at once, naming it and the PID (in this
    # process: RunDirError is one line like any user error, tests/test_command_errors.py).
    overrides = resumable_overrides(generated_root, run_dir)
    with pytest.raises(RunDirError) as error:
        train(compose_cfg("train", overrides, run_dir))
    assert str(error.value).startswith(
        f"the run directory {run_dir} is in use by PID {first.pid} on {socket.gethostname()}"
    )

    signalled_at = wait_mid_epoch(run_dir, first, after=2)
    first.send_signal(signal.SIGTERM)
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 143, output[-3000:]
    stopped_at = saved_step(last)
    assert f"SIGTERM: saved {last} at step {stopped_at}" in output
    # the step it was stopped at (no periodic save; not an epoch end)
    assert signalled_at <= stopped_at < signalled_at + STEPS_PER_EPOCH - 2
    report = (run_dir / "report.html").read_text()
    assert "The run was stopped: stopped by SIGTERM; resume with ckpt_path=" in report
    assert not (run_dir / LOCK_NAME).exists()

    resumed = finish(generated_root, run_dir, stopped_at, "ckpt_path=last")
    assert f"ckpt_path=last: resuming from {last}" in resumed.stdout
    assert f"Restored all states from the checkpoint at {last}" in resumed.stderr


def finish(data_root: Path, run_dir: Path, step: int, *extra: str, env: dict | None = None):
    """Run again in ``run_dir`` until 3 steps after ``step``; check it went on from ``step``
    (its first step is ``step + 1``) and saved its last step."""
    done = subprocess.run(
        resumable_training(data_root, run_dir, *SLOWER, LONG, f"trainer.max_steps={step + 3}",
                           *extra),
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [int(s) for s in re.findall(r" step (\d+)/", done.stdout)]
    assert steps[0] == step + 1, steps
    assert saved_step(run_dir / "checkpoints" / "last.ckpt") == step + 3
    return done


@pytest.mark.slow  # 15 s: Lightning's requeue path, with the lock and checkpoint IO of wsl
def test_slurm_requeue_signal_requeues_and_the_job_resumes(
    generated_root: Path, tmp_path: Path
) -> None:
    """SLURM's ``--signal=USR1@...``: Lightning saves ``hpc_ckpt_1.ckpt`` and runs
    ``scontrol requeue <job id>`` (a stand-in here, recording its arguments); the requeued
    job, started again in the same run directory, resumes from it."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_JOB_NAME": "train", "SLURM_NODELIST": socket.gethostname()}  # fmt: skip
    run_dir = tmp_path / "run"
    job = start(generated_root, run_dir, LONG, env=env)
    wait_mid_epoch(run_dir, job)
    job.send_signal(signal.SIGUSR1)
    hpc = run_dir / "hpc_ckpt_1.ckpt"
    deadline = time.monotonic() + 60
    while not (hpc.is_file() and calls.is_file()) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)  # SLURM stops the job it requeued
    output = job.communicate(timeout=120)[0]
    assert job.returncode == 143, output[-3000:]
    assert calls.read_text() == "requeue 4242\n"
    assert saved_step(hpc) >= 2

    requeued = finish(generated_root, run_dir, saved_step(hpc), env=env)
    assert f"Restored all states from the checkpoint at {hpc}" in requeued.stderr


def test_a_lock_left_by_a_dead_process_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with run_dir_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_reused_pid_is_not_the_old_run(tmp_path: Path) -> None:
    """PID reuse: the lock's PID is alive (here: this process), but started at another time."""
    lock = tmp_path / LOCK_NAME
    lock.write_text(
        json.dumps({"pid": os.getpid(), "start_time": "1", "host": socket.gethostname()})
    )
    with run_dir_lock(tmp_path):
        assert json.loads(lock.read_text())["start_time"] != "1"


def test_a_live_lock_is_refused_in_one_line(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"pid": sleeper.pid, "host": socket.gethostname()}
        (tmp_path / LOCK_NAME).write_text(json.dumps(owner))
        with pytest.raises(RunDirError) as error, run_dir_lock(tmp_path):
            pass
        assert str(error.value).startswith(
            f"the run directory {tmp_path} is in use by PID {sleeper.pid} on {owner['host']}"
        )
        other_host = {"pid": 1, "host": "another-node"}  # its process cannot be checked
        (tmp_path / LOCK_NAME).write_text(json.dumps(other_host))
        with (
            pytest.raises(RunDirError, match="in use by PID 1 on another-node"),
            run_dir_lock(tmp_path),
        ):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs (needs root, as on this project's machines and CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    path = small_disk / "checkpoints" / "last.ckpt"
    io = RunCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1), "w": torch.zeros(100_000)}, path)  # 0.4 MB
    with pytest.raises(CheckpointError) as error:
        io.save_checkpoint({"step": torch.tensor(2), "w": torch.zeros(1_000_000)}, path)  # 4 MB
    assert str(error.value) == (
        f"{path}: not saved: no space left on the disk of {path.parent} (the previous checkpoint "
        "there is intact); free some space and resume from it"
    )
    assert "inline_container" not in str(error.value)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no partial left


def test_ckpt_path_last_is_the_run_directorys_or_a_fresh_start(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["ckpt_path=last"], tmp_path)
    assert resolve_ckpt_path(cfg) is None  # no last.ckpt yet: start from scratch
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resolve_ckpt_path(cfg) == str(last)
    given = compose_cfg("train", ["ckpt_path=/elsewhere/x.ckpt"], tmp_path)
    assert resolve_ckpt_path(given) == "/elsewhere/x.ckpt"
