"""The adjoint under DDP, launched as users launch it: the CLI in subprocesses on 2 CPU processes.

Every parameter is an input of the adjoint's autograd Function and receives its gradient as an
output, so DDP's reducer averages it like any other: two ranks must hold the same weights as one
process that steps on their combined batch.
"""

import os
import subprocess
import sys
from pathlib import Path

import ddp_helpers
import pytest
import torch
from lightning.pytorch import seed_everything

from resnode_lightning.cli import main

TESTS = Path(__file__).resolve().parent
BATCH = 16  # data.batch_size, the global batch: 8 per process on 2


def fit_arguments(folder: Path, processes: int, overrides: tuple[str, ...]) -> list[str]:
    """`resnode fit` on the digits for 3 steps in ``processes`` CPU processes, saving each rank's final weights."""
    return [
        "fit", "--config", "quickstart.yaml", "--config", "presets/ddp_cpu.yaml", "--trainer.devices", str(processes),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--model.lr_scheduler", "null", "--data.batch_size", str(BATCH),
        "--trainer.callbacks+=ddp_helpers.SaveRankWeights", "--trainer.callbacks.folder", str(folder / "weights"),
        *overrides,
    ]  # fmt: skip


def fit(folder: Path, *overrides: str, processes: int = 2) -> dict[int, dict]:
    """The run of :func:`fit_arguments`, as users launch it (the CLI in a subprocess); each rank's final weights."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "resnode_lightning", *fit_arguments(folder, processes, overrides)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (done.stdout + done.stderr).count("\nDone. Checkpoints:") == 1  # rank 0 alone closes the run
    if processes > 1:  # the run says what one optimizer step takes
        assert f"Batch: {processes} processes x {BATCH // processes} = {BATCH} (data.batch_size" in done.stdout
    return {rank: torch.load(folder / "weights" / f"rank{rank}.pt", weights_only=True) for rank in range(processes)}


def fit_one_process_here(monkeypatch, folder: Path, *overrides: str) -> dict:
    """:func:`fit` on one process, in this one (quicker: no interpreter to start; no process group,
    which would stay in this process); its final weights."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["resnode"])
    main([*fit_arguments(folder, 1, overrides), "--trainer.strategy", "auto"])
    return torch.load(folder / "weights" / "rank0.pt", weights_only=True)


def assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tolerance, msg=lambda m, k=key: f"{k}: {m}")


# gradient explicitly: a new class_path keeps the old network's matching keys (quickstart's backprop)
TANH_NET = ["--model.network", "ddp_helpers.TanhStackNet", "--model.network.gradient", "adjoint"]


@pytest.mark.slow
def test_the_same_config_on_two_adjoint_ranks_takes_the_optimizer_steps_of_one_process(tmp_path, monkeypatch):
    """data.batch_size is the global batch: 2 processes x 8 step on the 16 samples one process steps
    on, at the config's learning rate, and end with its weights."""
    ranks = fit(tmp_path / "ddp", *TANH_NET)
    single = fit_one_process_here(monkeypatch, tmp_path / "one", *TANH_NET)
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    assert_same_weights(ranks[0], single, rtol=1e-5, atol=1e-6)
    # one run folder for the job, written by rank 0 alone
    (run,) = (tmp_path / "ddp" / "runs" / "quickstart").iterdir()
    assert {p.name for p in run.iterdir()} == {"config.yaml", "checkpoints", "metrics.csv"}
    assert not torch.equal(single["head.weight"], untrained(ddp_helpers.TanhStackNet)["head.weight"])


def untrained(network: type[torch.nn.Module]) -> dict:
    """The weights of ``network`` as the seeded config initialises them (to see that training moved them)."""
    seed_everything(0)
    return network().state_dict()


@pytest.mark.slow
def test_tied_weights_and_a_frozen_stage_under_ddp_match_one_process(tmp_path, monkeypatch):
    frozen = [*TANH_NET, "--model.trainable_stages", "[2]"]  # train the tied stack only
    ranks = fit(tmp_path / "ddp", *frozen)
    single = fit_one_process_here(monkeypatch, tmp_path / "one", *frozen)
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    assert_same_weights(ranks[0], single, rtol=1e-5, atol=1e-6)
    initial = untrained(ddp_helpers.TanhStackNet)
    assert torch.equal(single["untied.blocks.0.0.weight"], initial["untied.blocks.0.0.weight"])  # frozen
    assert not torch.equal(single["tied.blocks.0.0.weight"], initial["tied.blocks.0.0.weight"])  # trained


@pytest.mark.slow
def test_with_batchnorm_the_adjoint_ranks_stay_identical(tmp_path):
    ranks = fit(tmp_path / "ddp", "--model.network.gradient", "[backprop, backprop, adjoint, backprop]",
                "--model.network.depth", "[2, 2, 6, 2]")  # fmt: skip
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)


@pytest.mark.slow
def test_batch_statistics_shared_by_the_ranks_under_the_adjoint_give_the_steps_and_statistics_of_one_process(
    tmp_path, monkeypatch
):
    """What SyncBatchNorm does on GPUs, on CPU processes (ddp_helpers.AllReducedBatchNorm): batch
    statistics all-reduced in the forward, gradients through them all-reduced in the backward. The
    adjoint's backward rebuilds and recomputes its blocks in train mode, so these collectives run
    between DDP's gradient all-reduces: every rank issues them in the same order (else the run
    would hang), the two ranks end as one process on the combined batch, and the running
    statistics are those of the forward passes alone (the recomputes restore them)."""
    shared = ["--model.network", "ddp_helpers.SharedStatisticsNet", "--model.network.gradient", "adjoint"]
    ranks = fit(tmp_path / "ddp", *shared)
    single = fit_one_process_here(monkeypatch, tmp_path / "one", *shared)
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    assert_same_weights(ranks[0], single, rtol=1e-4, atol=1e-5)
    assert int(single["stack.blocks.0.1.num_batches_tracked"]) == 3  # one update per forward, none per recompute


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused_before_any_starts(in_empty_folder, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*fit_arguments(in_empty_folder, 2, ()), "--data.batch_size", "15"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "data.batch_size=15 is the global batch" in error and "--data.batch_size 14 or 16" in error


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs 2 GPUs (not verified on CPU)")
def test_syncbatchnorm_with_the_adjoint_keeps_ranks_identical_and_running_statistics_those_of_backprop(tmp_path):
    """The rebuild and recompute in backward run SyncBatchNorm in train mode: their collectives are
    issued in the same order on every rank (no deadlock) and their statistics are not counted twice."""
    simple = '{"class_path": "resnode_lightning.models.SimpleResNet", "init_args": {"depth": 8, "in_channels": 1}}'
    gpus = ["--config", "presets/ddp.yaml", "--trainer.devices", "2", "--model.network", simple,
            "--model.network.tied", "false"]  # fmt: skip
    runs = {
        gradient: fit(tmp_path / gradient, *gpus, "--model.network.gradient", gradient, processes=2)
        for gradient in ("adjoint", "backprop")
    }
    assert_same_weights(runs["adjoint"][0], runs["adjoint"][1], rtol=0, atol=0)
    statistics = [key for key in runs["adjoint"][0] if "running_" in key or "num_batches" in key]
    assert statistics
    for key in statistics:
        torch.testing.assert_close(runs["adjoint"][0][key], runs["backprop"][0][key], rtol=1e-5, atol=1e-6)
