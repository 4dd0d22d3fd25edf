"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint and finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import torch

from tests.support import (
    RESUMABLE_EPOCHS,
    ROOT,
    STEPS_PER_EPOCH,
    resumable_training,
    saved_step,
)


def test_sigkill_mid_epoch_then_resume_from_last_checkpoint(
    generated_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        resumable_training(generated_root, run_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and 0 < saved_step(last) < STEPS_PER_EPOCH:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = saved_step(last)
    assert 0 < killed_at < STEPS_PER_EPOCH  # mid first epoch

    resumed = subprocess.run(
        resumable_training(generated_root, run_dir, f"ckpt_path={last}"), cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in resumed.stderr
    assert saved_step(last) == RESUMABLE_EPOCHS * STEPS_PER_EPOCH
    epochs = sorted(p.name for p in (run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert epochs == ["epoch_002.ckpt"]  # the newest epoch only
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["optimizer_states"][0]["state"], "optimizer state (momentum) was not saved"
    assert state["lr_schedulers"][0]["last_epoch"] == RESUMABLE_EPOCHS
