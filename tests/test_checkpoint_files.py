"""Checkpoint files: damaged or foreign ones get one clear line (never PyTorch's advice to load
unsafely), the wrong model family says so, and saving stages files beside the checkpoint (not in
the system temp directory), removing what an interrupted save left."""

from __future__ import annotations

import argparse
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from tests.support import command, one_error_line, train_checkpoint
from wsl.checkpoint import (
    CheckpointError,
    RunCheckpoint,
    RunCheckpointIO,
    load_run_config,
    read_checkpoint,
)

DAMAGED = "is damaged (e.g. cut short by an interrupted copy) or is not a wsl checkpoint"


def test_truncated_checkpoint_is_named_as_damaged(localizer_ckpt: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "cut.ckpt"
    damaged.write_bytes(localizer_ckpt.read_bytes()[:3_000_000])  # an interrupted copy
    result = command("wsl.evaluate", f"ckpt_path={damaged}", f"hydra.run.dir={tmp_path / 'run'}")
    line = one_error_line(result)
    assert f"{damaged}: {DAMAGED}" in line
    assert "weights_only" not in result.stdout + result.stderr


def test_unsafe_or_foreign_files_are_refused_without_unsafe_advice(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.ckpt"  # a pickled object safe loading refuses
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, unsafe)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(unsafe)
    assert str(error.value) == f"{unsafe}: {DAMAGED}: it holds objects that safe loading refuses"
    assert "weights_only" not in str(error.value)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"not a complete zip archive as torch\.save writes"):
        read_checkpoint(text)
    plain = tmp_path / "plain.ckpt"  # a PyTorch file, but not written by wsl.train
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    with pytest.raises(CheckpointError, match="no 'wsl_config' entry: it was not written by"):
        load_run_config(plain)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.slow  # 12 s; the refusal itself: tests/test_resume_checks.py, in-process
def test_checkpoint_of_another_family_says_so_in_one_line(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path
) -> None:
    result = command(
        "wsl.train", "experiment=wsddn_demo", f"data.root={generated_root}",
        f"ckpt_path={localizer_ckpt}", "train=false", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    line = one_error_line(result)
    assert (
        f"{localizer_ckpt}: a LocalizerAlexNet checkpoint, but the model chosen is a WSDDN" in line
    )
    assert "state_dict" not in result.stdout + result.stderr
    assert "the run failed" in (tmp_path / "run" / "report.html").read_text().lower()


def test_weights_that_do_not_fit_their_config_are_named(
    localizer_ckpt: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(localizer_ckpt, weights_only=True)
    del checkpoint["state_dict"][next(iter(checkpoint["state_dict"]))]  # a weight went missing
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(CheckpointError) as error:
        RunCheckpoint.read(tampered).build_module()
    assert str(error.value) == (
        f"{tampered}: its weights do not fit the LocalizerAlexNet its config describes "
        "(RuntimeError); the file was changed after `wsl.train` wrote it"
    )


def test_saving_needs_no_temp_dir_and_removes_stale_partials(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every temporary file would fail (``tempfile.tempdir`` is a file, as a full TMPDIR
    fails), yet a run resumed from a checkpoint writes its own; partials a killed save left are
    removed at the start, in the run's checkpoint folder and beside the checkpoint resumed
    from."""
    resumed_from = tmp_path / "trained" / "last.ckpt"  # a copy: a partial is planted beside it
    resumed_from.parent.mkdir()
    shutil.copy(localizer_ckpt, resumed_from)
    planted = resumed_from.parent / ".last.ckpt.x1y2z3.partial"
    planted.write_bytes(b"half")
    blocked = tmp_path / "tmp_is_a_file"
    blocked.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocked))
    with pytest.raises(OSError):
        tempfile.mkstemp()
    run = tmp_path / "run"
    stale = [run / "checkpoints" / ".last.ckpt.partial",
             run / "checkpoints" / ".epoch_000.ckpt.k2j4x9.partial"]  # fmt: skip
    kept = [run / "checkpoints" / "notes.partial", run / "checkpoints" / "mine.txt"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a checkpoint")
    ckpt = train_checkpoint(generated_root, run, "experiment=localizer_demo",
                            f"ckpt_path={resumed_from}", "trainer.max_epochs=2")  # fmt: skip
    assert sorted(p.name for p in ckpt.parent.iterdir()) == sorted(
        ["last.ckpt", "notes.partial", "mine.txt"]  # no Lightning default checkpoint
    )
    assert load_run_config(ckpt).model.net._target_.endswith("LocalizerAlexNet")
    assert not planted.exists()


def test_staged_save_is_atomic(tmp_path: Path) -> None:
    """A save that fails leaves neither a partial file nor a changed checkpoint."""
    path = tmp_path / "a.ckpt"
    io = RunCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a lambda: not picklable
        io.save_checkpoint({"step": torch.tensor(2), "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]
