"""The shell's promises about checkpoints and runs: a checkpoint is data and never runs code; a
resume continues its own run and never drops a flag; every checkpoint argument is resolved by one
rule and every bad one is a one-line error; a scheduler's signal leaves a resumable run and a
non-zero exit."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from resnode_lightning.cli import main
from resnode_lightning.cli.runs import resolve_checkpoint, run_folder_of
from resnode_lightning.cli.signals import SignalRecorder

TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent
QUICK = ["--config", "quickstart.yaml", "--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]
RUN = Path("runs") / "quickstart" / "version_0"


def exit_status_and_error(capsys, *arguments: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit:
        main(list(arguments))
    return exit.value.code, capsys.readouterr().err


@pytest.fixture
def trained(in_empty_folder) -> Path:
    """A finished quickstart run (debug preset: 4 steps, one epoch) in runs/quickstart/version_0."""
    main(["fit", *QUICK])
    return in_empty_folder / RUN


# -- the trust boundary ---------------------------------------------------------------------------


@pytest.fixture
def foreign_checkpoint(trained, in_empty_folder) -> Path:
    """A checkpoint whose hyper-parameters name a class of a module beside it, which, imported,
    leaves a marker file (as code from a checkpoint could do anything)."""
    (in_empty_folder / "somemodule.py").write_text(
        "from pathlib import Path\nPath('imported').touch()\nimport torch\nclass Net(torch.nn.Module):\n    pass\n"
    )
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["network"] = {"class_path": "somemodule.Net", "init_args": {}}
    torch.save(checkpoint, in_empty_folder / "foreign.ckpt")
    return in_empty_folder / "foreign.ckpt"


def test_a_checkpoint_naming_foreign_code_is_refused_before_anything_is_imported(
    foreign_checkpoint, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(foreign_checkpoint.parent))  # as `python -m` would put the working folder
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", str(foreign_checkpoint))
    assert status == 2
    assert "its hyper-parameters name 'somemodule.Net' (at network.class_path)" in error and "never code" in error
    assert not (foreign_checkpoint.parent / "imported").exists()
    assert "somemodule" not in sys.modules


def test_a_class_of_the_users_own_config_may_be_in_the_checkpoint_that_config_resumes(trained, capsys, monkeypatch):
    """A researcher's own network class (here a test module's) is theirs to trust: named by their config."""
    monkeypatch.syspath_prepend(str(TESTS))
    own = ["--model.network", "reliability_helpers.RandomisedNet", "--trainer.max_epochs", "2"]
    main(["fit", *QUICK, *own, "--trainer.default_root_dir", "own"])
    cli = main(["fit", *QUICK, *own, "--trainer.max_epochs", "3", "--trainer.default_root_dir", "own",
                "--ckpt_path", "own/quickstart/version_0"])  # fmt: skip
    assert cli.trainer.current_epoch == 3


def test_a_checkpoint_url_is_refused(in_empty_folder, capsys):
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", "http://example.org/x.ckpt")
    assert status == 2 and "local files only" in error


def test_weights_only_false_is_refused_for_a_checkpoint_the_user_did_not_name(trained, capsys):
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", "last", "--weights_only", "false")
    assert status == 2 and "accepted only for a file named by its path" in error


class Note:
    """An object a checkpoint may carry besides tensors (a pickle: loadable only in full)."""


def test_weights_only_false_loads_in_full_a_file_the_user_names(trained, capsys):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["note"] = Note()
    torch.save(checkpoint, "with_object.ckpt")
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", "with_object.ckpt")
    assert status == 2 and "holds objects other than tensors" in error
    cli = main(["validate", *QUICK, "--ckpt_path", "with_object.ckpt", "--weights_only", "false"])
    assert cli.trainer.ckpt_path == "with_object.ckpt"


def test_resuming_a_slurm_requeued_run_takes_its_newer_hpc_checkpoint(tmp_path):
    run = tmp_path / "runs" / "x" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "hpc_ckpt_3.ckpt").write_bytes(b"")
    os.utime(run / "checkpoints" / "last.ckpt", (1e9, 1e9))
    assert resolve_checkpoint("last", "resume", run.parent) == run / "hpc_ckpt_3.ckpt"
    assert run_folder_of(run / "hpc_ckpt_3.ckpt") == run  # the resumed run continues in its folder
    assert resolve_checkpoint(run, "weights") == run / "checkpoints" / "last.ckpt"  # weights: never hpc


# -- one resolver, one-line errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: (folder / "x.ckpt").write_bytes(b""), "is not a readable torch.save file"),
        (lambda folder: (folder / "x.ckpt").write_bytes(b"garbage" * 100), "is not a readable torch.save file"),
        (lambda folder: (folder / "x.ckpt").mkdir(), "holds no run folder version_<k>"),
        (lambda folder: torch.save({"a": torch.zeros(2)}, folder / "x.ckpt"), "holds weights but no training state"),
    ],
    ids=["empty", "garbage", "a folder", "a state dict"],
)
def test_a_bad_ckpt_path_is_a_one_line_input_error(in_empty_folder, capsys, make, message):
    make(in_empty_folder)
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", "x.ckpt")
    assert status == 2 and message in error
    assert error.startswith("error: ") and "Traceback" not in error


def test_a_truncated_checkpoint_is_a_one_line_input_error(trained, capsys):
    Path("cut.ckpt").write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    status, error = exit_status_and_error(capsys, "validate", *QUICK, "--ckpt_path", "cut.ckpt")
    assert status == 2 and "'cut.ckpt' is not a readable torch.save file" in error


def test_a_checkpoint_of_another_network_is_refused_naming_what_differs(trained, capsys):
    status, error = exit_status_and_error(
        capsys, "validate", *QUICK, "--model.network.init_args.base_width", "8", "--ckpt_path", str(trained)
    )
    assert status == 2
    assert "model.network.init_args.base_width: 8 here" in error


def test_every_command_takes_a_run_folder_where_it_takes_a_checkpoint(trained, capsys):
    cli = main(["validate", *QUICK, "--ckpt_path", str(trained)])  # a run folder: its best.ckpt
    assert cli.trainer.ckpt_path == str(trained / "checkpoints" / "best.ckpt")
    cli = main(["fit", *QUICK, "--model.init_from", "runs/quickstart"])  # a config's runs: the newest one's best
    assert cli.model.initialised_from == Path("runs/quickstart/version_0/checkpoints/best.ckpt")


# -- resume says what it does ---------------------------------------------------------------------


def test_a_resume_continues_in_its_run_folder_and_keeps_the_best_of_the_whole_run(trained):
    best_before = torch.load(trained / "checkpoints" / "best.ckpt", weights_only=True)["callbacks"]
    cli = main(["fit", *QUICK, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert Path(cli.trainer.log_dir).resolve() == trained.resolve()
    assert not (trained.parent / "version_1").exists()
    assert cli.trainer.current_epoch == 2
    checkpoint_state = next(v for k, v in best_before.items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc1'"))
    assert cli.trainer.checkpoint_callback.best_model_score >= checkpoint_state["best_model_score"]
    with (trained / "metrics.csv").open() as file:
        epochs = {row["epoch"] for row in csv.DictReader(file)}
    assert {"0", "1"} <= epochs  # the resumed part is appended to the first part's rows
    saved = yaml.safe_load((trained / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2 and saved["ckpt_path"] is None  # what ran; runs again as a new run


def test_a_resume_logs_into_its_run_folder_whatever_the_first_config_is_called(trained):
    reordered = ["--config", "presets/debug.yaml", "--config", "quickstart.yaml", "--config", "presets/debug.yaml"]
    cli = main(["fit", *reordered, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "2",
                "--ckpt_path", str(trained)])  # fmt: skip
    assert Path(cli.trainer.log_dir).resolve() == trained.resolve()
    assert not Path("runs/debug").exists()


@pytest.mark.parametrize("bar", ["TQDMProgressBar", "RichProgressBar"])
def test_a_run_resumed_mid_epoch_shows_its_epoch_and_its_length_in_the_progress_bar(in_empty_folder, bar):
    if bar == "RichProgressBar":
        pytest.importorskip("rich")
    progress = ["--trainer.enable_progress_bar", "true", f"--trainer.callbacks+=lightning.pytorch.callbacks.{bar}"]
    keep = ["--trainer.callbacks+=reliability_helpers.KeepCheckpointOfStep", "--trainer.callbacks.step", "2",
            "--trainer.callbacks.to", "step2.ckpt", "--checkpoint.every_n_train_steps", "2"]  # fmt: skip
    main(["fit", *QUICK, *progress, *keep])
    os.replace("step2.ckpt", RUN / "checkpoints" / "last.ckpt")  # as if killed two of four batches into epoch 0
    cli = main(["fit", *QUICK, *progress, "--ckpt_path", "last"])
    assert cli.trainer.global_step == 4
    shown = cli.trainer.progress_bar_callback
    if bar == "TQDMProgressBar":  # was "Training: 4/?"
        tqdm = shown.train_progress_bar
        assert (tqdm.desc, tqdm.n, tqdm.total) == ("Epoch 0: ", 4, 4)
    else:
        task = shown.progress.tasks[shown.train_progress_bar_id]
        assert (task.description.strip(), task.completed, task.total) == ("Epoch 0/0", 4, 4)


def test_a_flag_that_changes_a_resumed_runs_model_is_refused_naming_it(trained, capsys):
    status, error = exit_status_and_error(
        capsys, "fit", *QUICK, "--trainer.max_epochs", "2", "--ckpt_path", "last",
        "--model.optimizer.init_args.lr", "0.5",
    )  # fmt: skip
    assert status == 2
    saved = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    lr = saved["optimizer"]["init_args"]["lr"]
    assert f"model.optimizer.init_args.lr: 0.5 here, {lr!r} in the checkpoint" in error and "--model.init_from" in error


def test_a_resume_with_nothing_left_to_train_says_so(trained, capsys):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["epoch"] = 5
    torch.save(checkpoint, trained / "checkpoints" / "last.ckpt")
    status, error = exit_status_and_error(capsys, "fit", *QUICK, "--ckpt_path", "last")
    assert status == 2 and "past trainer.max_epochs=1" in error and "--trainer.max_epochs 6 or more" in error


# -- a scheduler's signals ----------------------------------------------------------------------------


def resnode_process(folder: Path, *arguments: str) -> subprocess.Popen:
    path = os.pathsep.join([str(REPOSITORY), str(TESTS), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "resnode_lightning", *arguments]
    return subprocess.Popen(command, cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def test_sigusr1_outside_slurm_stops_a_run_as_sigterm_does_and_is_the_exit_status(monkeypatch):
    """Outside a SLURM job (where Lightning's requeue answers it), SIGUSR1 becomes a SIGTERM for the
    trainer, and the exit status names the signal that came: 128 + 10."""
    for variable in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_JOB_ID"):
        monkeypatch.delenv(variable, raising=False)
    recorder = SignalRecorder()
    recorder.install()
    try:
        recorder.trainer_running = True
        received = []
        signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))  # Lightning's, composed
        os.kill(os.getpid(), signal.SIGUSR1)
        assert received == [signal.SIGTERM]
        assert recorder.received == signal.SIGUSR1 and recorder.exit_status == 128 + signal.SIGUSR1
    finally:
        recorder.uninstall()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM], ids=["SIGTERM"])
def test_a_signal_leaves_a_resumable_checkpoint_and_a_non_zero_exit(tmp_path, signal_number):
    long_run = ["fit", "--config", "quickstart.yaml", "--trainer.max_epochs", "1000",
                "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_train_steps", "0"]  # fmt: skip
    process = resnode_process(tmp_path, *long_run)
    metrics = tmp_path / RUN / "metrics.csv"
    deadline = time.monotonic() + 120
    while not metrics.is_file() and time.monotonic() < deadline:  # written at the first validation
        time.sleep(0.5)
    time.sleep(1)
    process.send_signal(signal_number)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, output[-3000:]
    assert f"Stopped by {signal.Signals(signal_number).name}" in output and "--ckpt_path last" in output
    stopped = torch.load(tmp_path / RUN / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["global_step"] > 0
    assert len(metrics.read_text().splitlines()) > 1
    resumed = resnode_process(tmp_path, *long_run[:4], str(stopped["epoch"] + 2), *long_run[5:], "--ckpt_path", "last")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert "Restored all states from the checkpoint at runs/quickstart/version_0/checkpoints/last.ckpt" in output
    final = torch.load(tmp_path / RUN / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] > stopped["global_step"]


@pytest.mark.parametrize(("fit_loop", "told"), [({"restarted_mid_epoch": True}, True), ({}, False)])
def test_the_progress_bar_is_told_its_epoch_only_after_a_mid_epoch_resume_and_lightning_24_is_left_alone(
    fit_loop, told
):
    """Lightning 2.4 (which pyproject allows) has no ``restarted_mid_epoch``: there the bar is left as
    Lightning shows it, rather than failing."""
    from types import SimpleNamespace

    from resnode_lightning.training.progress import ResumedEpochProgress

    calls = []
    bar = SimpleNamespace(on_train_epoch_start=lambda trainer, module: calls.append(trainer))
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(**fit_loop), progress_bar_callback=bar)
    callback = ResumedEpochProgress()
    callback.on_train_start(trainer, None)
    callback.on_train_batch_start(trainer, None, None, 0)
    callback.on_train_batch_start(trainer, None, None, 1)
    assert calls == ([trainer] if told else [])
