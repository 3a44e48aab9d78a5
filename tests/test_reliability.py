"""Reliability: a run killed mid-epoch resumes exactly; checkpoints are never half-written;
non-finite steps never reach the weights; untrusted files run no code; runs repeat bitwise."""

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
from lightning.pytorch import Callback
from reliability_helpers import PoisonedGradient
from training_helpers import RandomImages, trainer

from resnode_lightning.cli import main
from resnode_lightning.cli.runs import resolve_checkpoint
from resnode_lightning.models import SimpleResNet
from resnode_lightning.training import ImageClassifier
from resnode_lightning.training.checkpoint_io import AtomicCheckpointIO
from resnode_lightning.training.numerical_faults import NonFiniteTrainingError, SkipNonFiniteSteps

TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent
DEBUG = ["--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]


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
    # the resumed run continues in its own folder
    assert not (tmp_path / "killed" / "runs" / "quickstart" / "version_1").exists()
    final = checkpoint(interrupted / "last.ckpt")
    assert final["global_step"] == expected["global_step"] == 8
    # weights, momentum, schedule, data order and augmentation stream, global random generators
    # (the loops' counters differ: the step checkpoint, which saved nothing after the restart,
    # saves last.ckpt once more when training ends, after the epoch is counted complete)
    for part in ("state_dict", "optimizer_states", "lr_schedulers", "DigitsDataModule"):
        assert_bitwise_equal(final[part], expected[part], part)
    assert_bitwise_equal(final["callbacks"]["RandomStates"], expected["callbacks"]["RandomStates"])


def test_ckpt_path_last_is_the_last_checkpoint_of_the_highest_version_that_has_one(tmp_path):
    runs = tmp_path / "runs" / "quickstart"
    with pytest.raises(FileNotFoundError, match="no run in"):
        resolve_checkpoint("last", "resume", runs)
    for version, age in (("version_0", 30), ("version_1", 10), ("version_2", 20)):
        (runs / version / "checkpoints").mkdir(parents=True)
        (runs / version / "checkpoints" / "last.ckpt").write_bytes(b"")
        os.utime(runs / version / "checkpoints" / "last.ckpt", (1e9 - age, 1e9 - age))  # file times do not matter
    (runs / "version_3" / "checkpoints").mkdir(parents=True)  # a run killed before its first checkpoint
    (runs / "version_3" / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert resolve_checkpoint("last", "resume", runs) == runs / "version_2" / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint("last", "weights", runs) == runs / "version_3" / "checkpoints" / "best.ckpt"
    assert resolve_checkpoint(runs / "version_1", "resume") == runs / "version_1" / "checkpoints" / "last.ckpt"


def test_ckpt_path_last_without_an_earlier_run_starts_afresh_in_fit_and_is_refused_elsewhere(
    in_empty_folder, capsys
):
    with pytest.warns(UserWarning, match=r"--ckpt_path last: no earlier run in 'runs/quickstart'.*from scratch"):
        cli = main(["fit", "--config", "quickstart.yaml", *DEBUG, "--ckpt_path", "last"])
    assert cli.trainer.global_step == 4
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    with pytest.raises(SystemExit) as exit:
        main(["validate", "--config", "quickstart_finetune.yaml", *DEBUG, "--ckpt_path", "last"])
    assert exit.value.code == 2
    assert "error: --ckpt_path: no run in 'runs/quickstart_finetune' has a checkpoints/best.ckpt" in (
        capsys.readouterr().err
    )


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


# -- numerical faults ----------------------------------------------------------------------------


class FaultyClassifier(ImageClassifier):
    """An adjoint SimpleResNet classifier with faults at chosen steps: a NaN added to the loss (its
    gradients stay finite), or a NaN born in the backward of block 3 of the adjoint stack."""

    def __init__(self, loss_faults=(), backward_faults=()) -> None:
        torch.manual_seed(0)
        network = SimpleResNet(depth=6, width=4, num_classes=4, gradient="adjoint")
        sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=0.01)
        super().__init__(network, num_classes=4, optimizer=sgd)
        self.loss_faults, self.backward_faults = set(loss_faults), set(backward_faults)
        network.stack.blocks[3].register_forward_hook(self.poison)

    def poison(self, block, inputs, output):
        # the adjoint's backward recomputes the block with grad enabled: that is where the NaN is born
        if self.training and torch.is_grad_enabled() and self.global_step in self.backward_faults:
            return PoisonedGradient.apply(output)
        return output

    def loss(self, logits, labels):
        loss = super().loss(logits, labels)
        return loss + float("nan") if self.training and self.global_step in self.loss_faults else loss


class Snapshots(Callback):
    """The weights and the optimizer state before and after every training step."""

    def __init__(self) -> None:
        self.before, self.after = {}, {}

    @staticmethod
    def state(module) -> tuple:
        optimizer = module.trainer.optimizers[0]
        moments = {id(p): s["momentum_buffer"].clone() for p, s in optimizer.state.items() if "momentum_buffer" in s}
        return {k: v.clone() for k, v in module.state_dict().items()}, moments

    def on_train_batch_start(self, trainer, module, batch, batch_index):
        self.before[batch_index] = self.state(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        self.after[batch_index] = self.state(module)


def fit_with_faults(tmp_path, model, stop_after: int = 5, **options) -> tuple[Snapshots, SkipNonFiniteSteps]:
    snapshots, guard = Snapshots(), SkipNonFiniteSteps(stop_after)
    run = trainer(tmp_path, limit_val_batches=0, callbacks=[snapshots, guard], **options)
    run.fit(model, RandomImages())
    return snapshots, guard


@pytest.mark.parametrize(
    ("faults", "where"),
    [
        ({"loss_faults": {2}}, "the loss was not finite and every gradient was finite"),
        ({"backward_faults": {2}}, "in stack network.stack, parameter network.stack.blocks.3."),
    ],
    ids=["in-the-loss", "inside-the-adjoint-backward"],
)
def test_a_non_finite_step_is_skipped_and_logged_leaving_weights_and_optimizer_state_unchanged(
    tmp_path, faults, where
):
    model = FaultyClassifier(**faults)
    with pytest.warns(UserWarning, match=rf"Skipped step 2 \(epoch 0\): .*{where}") as warned:
        snapshots, guard = fit_with_faults(tmp_path, model)
    assert len([w for w in warned if "Skipped step" in str(w.message)]) == 1
    assert_bitwise_equal(snapshots.after[2], snapshots.before[2])  # weights, BatchNorm buffers, momentum
    for step in (1, 3):  # the steps around it trained
        assert not torch.equal(snapshots.after[step][0]["network.head.fc.weight"],
                               snapshots.before[step][0]["network.head.fc.weight"])  # fmt: skip
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())
    assert guard.skipped == 1 and model.trainer.callback_metrics["train/skipped_steps"] == 1


def test_training_stops_after_stop_after_bad_steps_in_a_row_naming_the_step_and_where_the_nan_was_born(tmp_path):
    model = FaultyClassifier(backward_faults={1, 2, 3})
    with pytest.warns(UserWarning, match="Skipped step"), pytest.raises(NonFiniteTrainingError) as stopped:
        fit_with_faults(tmp_path, model, stop_after=3)
    message = str(stopped.value)
    assert message.startswith("Training stopped at step 3: 3 consecutive steps had a non-finite loss or gradient")
    assert "the loss was finite; the non-finite gradients start in stack network.stack, parameter " in message
    assert "parameter network.stack.blocks.3." in message and "skip_non_finite.stop_after to 0" in message
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())


def test_stop_after_0_skips_every_bad_step_and_never_stops(tmp_path):
    model = FaultyClassifier(loss_faults={0, 1, 2, 3})
    with pytest.warns(UserWarning, match="Skipped step 3"):
        snapshots, guard = fit_with_faults(tmp_path, model, stop_after=0)
    assert guard.skipped == 4
    assert_bitwise_equal(snapshots.after[3], snapshots.before[0])


def test_with_a_loss_scaler_an_overflowing_step_is_skipped_and_counted_once(tmp_path):
    from lightning.pytorch.plugins import MixedPrecision

    model = FaultyClassifier()
    model.network.stack.blocks[3].conv1.weight.register_hook(
        lambda gradient: gradient * float("inf") if model.global_step == 1 else gradient
    )
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.warns(UserWarning, match="Skipped step 1"):
        snapshots, guard = fit_with_faults(tmp_path, model, plugins=[plugin])
    assert guard.skipped == 1
    assert plugin.scaler.get_scale() == 2.0**15  # the scaler skipped it too, and lowered its scale once
    assert_bitwise_equal(snapshots.after[1], snapshots.before[1])


def test_the_cli_skips_non_finite_steps_by_default_and_stop_after_is_an_option(in_empty_folder):
    cli = main(["fit", "--config", "quickstart.yaml", *DEBUG, "--skip_non_finite.stop_after", "2"])
    (guard,) = [c for c in cli.trainer.callbacks if isinstance(c, SkipNonFiniteSteps)]
    assert guard.stop_after == 2 and guard.skipped == 0


@pytest.mark.slow
def test_under_ddp_a_nan_born_on_one_rank_is_skipped_by_every_rank(tmp_path):
    """The gradients are averaged over ranks before the check: a NaN born in rank 1's backward is
    a NaN on both ranks, which skip the step alike and stay identical."""
    weights = tmp_path / "weights"
    done = resnode(
        tmp_path, "fit", "--config", "quickstart.yaml", "--config", "presets/ddp_cpu.yaml",
        "--trainer.devices", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1", "--data.batch_size", "16",
        "--model.network", "ddp_helpers.TanhStackNet",
        "--trainer.callbacks+=reliability_helpers.PoisonBackwardOnRank",
        "--trainer.callbacks+=ddp_helpers.SaveRankWeights", "--trainer.callbacks.folder", str(weights),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Skipped step 1 (epoch 0): the loss was finite; the non-finite gradients start in stack " in done.stderr
    ranks = [torch.load(weights / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert_bitwise_equal(ranks[0], ranks[1])
    assert all(torch.isfinite(value).all() for value in ranks[0].values())
    metrics = (tmp_path / "runs" / "quickstart" / "version_0" / "metrics.csv").read_text()
    assert "train/skipped_steps" in metrics.splitlines()[0]


# -- untrusted files ---------------------------------------------------------------------------


class CreatesAFile:
    """Unpickling this object creates a file: code run by loading a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_init_from_refuses_a_checkpoint_that_would_run_code_naming_the_file(in_empty_folder, capsys):
    marker = in_empty_folder / "pwned"
    evil = in_empty_folder / "evil.ckpt"
    state = SimpleResNet().state_dict()
    torch.save({"state_dict": {f"network.{k}": v for k, v in state.items()}, "payload": CreatesAFile(marker)}, evil)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "quickstart.yaml", *DEBUG, "--model.init_from", str(evil)])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert f"error: model.init_from: {str(evil)!r} holds objects other than tensors" in error
    assert "could run any code" in error
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what a full load would have done
    assert marker.exists()


# -- determinism ---------------------------------------------------------------------------------


def test_the_same_config_and_seed_give_bitwise_equal_weights_and_equal_metrics_twice(in_empty_folder):
    for _ in range(2):
        main(["fit", "--config", "quickstart.yaml", *DEBUG, "--data.init_args.augment", "true"])
    runs = [in_empty_folder / "runs" / "quickstart" / f"version_{k}" for k in (0, 1)]
    first, second = (checkpoint(run / "checkpoints" / "last.ckpt") for run in runs)
    for part in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert_bitwise_equal(first[part], second[part], part)
    metrics = [(run / "metrics.csv").read_text().splitlines() for run in runs]
    header = metrics[0][0].split(",")
    timings = [i for i, name in enumerate(header) if name.startswith("system/")]
    assert "train/loss" in header and "val/acc1" in header
    rows = [[[v for i, v in enumerate(row.split(",")) if i not in timings] for row in m] for m in metrics]
    assert rows[0] == rows[1]


def test_an_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    from resnode_lightning.files import atomic_write_text

    target = tmp_path / "state.json"
    atomic_write_text(target, "first")
    os.chmod(target, 0o600)  # a user who made it private
    atomic_write_text(target, "second")
    assert target.read_text() == "second" and (target.stat().st_mode & 0o777) == 0o600
