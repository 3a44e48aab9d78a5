"""Reliability: a run killed mid-epoch resumes exactly; checkpoints are never half-written."""

import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnode_lightning.cli import main
from resnode_lightning.training.checkpoints import AtomicCheckpointIO, newest_last_checkpoint

TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent
DEBUG = ["--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["resnode"])
    return tmp_path


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_bitwise_equal(a, b, where: str = "") -> None:
    """Nested dicts, lists and tuples of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# -- resuming after a kill ---------------------------------------------------------------------

RANDOMISED_FIT = [
    "fit", "--config", "quickstart.yaml", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4",
    "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
    "--model.network", "reliability_helpers.RandomisedNet", "--data.init_args.augment", "true",
    "--checkpoint.every_n_train_steps", "3",
]  # fmt: skip


def resnode(folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`python -m resnode_lightning ARGUMENTS` in ``folder``, with this checkout and the tests folder importable."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(REPOSITORY), str(TESTS), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "resnode_lightning", *arguments]
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_last_and_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    whole = resnode(tmp_path / "whole", *RANDOMISED_FIT)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # 2 epochs of 4 steps; last.ckpt every 3 steps and at each epoch's end: killed after step 7,
    # the newest checkpoint is step 6's, two batches into epoch 1, and steps 7 and 8 are redone
    kill = ["--trainer.callbacks+=reliability_helpers.KillAfterStep", "--trainer.callbacks.step", "7"]
    killed = resnode(tmp_path / "killed", *RANDOMISED_FIT, *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    interrupted = tmp_path / "killed" / "runs" / "quickstart" / "version_0" / "checkpoints"
    assert checkpoint(interrupted / "last.ckpt")["global_step"] == 6
    assert checkpoint(interrupted / "best.ckpt")["global_step"] == 4  # validated weights only, at an epoch's end
    resumed = resnode(tmp_path / "killed", *RANDOMISED_FIT, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint at runs/quickstart/version_0/checkpoints/last.ckpt" in (
        resumed.stderr
    )
    expected = checkpoint(tmp_path / "whole" / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt")
    final = checkpoint(tmp_path / "killed" / "runs" / "quickstart" / "version_1" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == expected["global_step"] == 8
    # weights, momentum, schedule, data order and augmentation stream, global random generators
    # (the loops' counters differ: the step checkpoint, which saved nothing after the restart,
    # saves last.ckpt once more when training ends, after the epoch is counted complete)
    for part in ("state_dict", "optimizer_states", "lr_schedulers", "DigitsDataModule"):
        assert_bitwise_equal(final[part], expected[part], part)
    assert_bitwise_equal(final["callbacks"]["RandomStates"], expected["callbacks"]["RandomStates"])


def test_ckpt_path_last_is_the_newest_last_checkpoint_of_the_configs_earlier_runs(tmp_path):
    runs = tmp_path / "runs" / "quickstart"
    assert newest_last_checkpoint(runs) is None
    for version, age in (("version_0", 30), ("version_1", 10), ("version_2", 20)):
        (runs / version / "checkpoints").mkdir(parents=True)
        (runs / version / "checkpoints" / "last.ckpt").write_bytes(b"")
        os.utime(runs / version / "checkpoints" / "last.ckpt", (1e9 - age, 1e9 - age))
    (runs / "version_3" / "checkpoints").mkdir(parents=True)  # a run killed before its first checkpoint
    (runs / "version_3" / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert newest_last_checkpoint(runs) == runs / "version_1" / "checkpoints" / "last.ckpt"


def test_ckpt_path_last_without_an_earlier_run_starts_afresh_in_fit_and_is_refused_elsewhere(in_empty_folder):
    with pytest.warns(UserWarning, match=r"--ckpt_path last: no earlier run in 'runs/quickstart'.*from scratch"):
        cli = main(["fit", "--config", "quickstart.yaml", *DEBUG, "--ckpt_path", "last"])
    assert cli.trainer.global_step == 4
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    with pytest.raises(FileNotFoundError, match=r"no earlier run in 'runs/quickstart_finetune'"):
        main(["validate", "--config", "quickstart_finetune.yaml", *DEBUG, "--ckpt_path", "last"])


# -- checkpoints are never half-written ------------------------------------------------------------


@pytest.fixture
def previous_checkpoint(tmp_path) -> Path:
    """A folder holding a good last.ckpt, which the next save will try to replace."""
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, tmp_path / "checkpoints" / "last.ckpt")
    return tmp_path / "checkpoints" / "last.ckpt"


def test_a_save_interrupted_by_an_error_leaves_the_previous_checkpoint_and_no_partial_file(
    previous_checkpoint, monkeypatch
):
    before = previous_checkpoint.read_bytes()

    def disk_full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # after the bytes are written, before they are in place
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"step": torch.arange(10**6)}, previous_checkpoint)
    assert previous_checkpoint.read_bytes() == before
    assert [p.name for p in previous_checkpoint.parent.iterdir()] == ["last.ckpt"]


def test_a_save_never_copies_into_the_target_so_a_kill_cannot_truncate_it(previous_checkpoint, monkeypatch):
    """With the temporary folder on another file system than the checkpoint (a node's /tmp, a shared
    disk), a rename across them fails and a move becomes a copy into the target, which a kill can
    interrupt: here every move across folders fails as across devices, and a copy dies half-way."""
    before = previous_checkpoint.read_bytes()
    rename, replace = os.rename, os.replace

    def same_device_only(move, source, target, **options):
        if Path(source).resolve().parent != Path(target).resolve().parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return move(source, target, **options)

    def killed_while_copying(source, target, **options):
        Path(target).write_bytes(Path(source).read_bytes()[:100])
        raise ProcessLookupError("killed while copying")  # what a kill leaves: a truncated target

    monkeypatch.setattr(os, "rename", functools.partial(same_device_only, rename))
    monkeypatch.setattr(os, "replace", functools.partial(same_device_only, replace))
    monkeypatch.setattr(shutil, "copyfile", killed_while_copying)
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2)}, previous_checkpoint)
    assert previous_checkpoint.read_bytes() != before
    assert checkpoint(previous_checkpoint)["step"] == 2
    assert [p.name for p in previous_checkpoint.parent.iterdir()] == ["last.ckpt"]
