"""The adjoint under DDP, launched as users launch it: the CLI in subprocesses on 2 CPU processes.

Every parameter is an input of the adjoint's autograd Function and receives its gradient as an
output, so DDP's reducer averages it like any other: two ranks must hold the same weights as one
process that steps on their combined batch.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
BATCH = 16  # per process; the single-process reference takes 2 x BATCH


def fit(folder: Path, *overrides: str, processes: int = 2, batch: int = BATCH) -> dict[int, dict]:
    """`resnode fit` on the digits for 3 steps in ``processes`` CPU processes; each rank's final weights."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights"
    command = [
        sys.executable, "-m", "resnode_lightning", "fit", "--config", "quickstart.yaml",
        "--config", "presets/ddp_cpu.yaml", "--trainer.devices", str(processes),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--model.lr_scheduler", "null", "--data.batch_size", str(batch),
        "--trainer.callbacks+=ddp_helpers.SaveRankWeights", "--trainer.callbacks.folder", str(weights),
        *overrides,
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (done.stdout + done.stderr).count("\nDone. Checkpoints:") == 1  # rank 0 alone closes the run
    return {rank: torch.load(weights / f"rank{rank}.pt", weights_only=True) for rank in range(processes)}


def assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tolerance, msg=lambda m, k=key: f"{k}: {m}")


# gradient explicitly: a new class_path keeps the old network's matching keys (quickstart's backprop)
TANH_NET = ["--model.network", "ddp_helpers.TanhStackNet", "--model.network.gradient", "adjoint"]


@pytest.mark.slow
def test_two_adjoint_ranks_hold_the_weights_of_one_process_stepping_on_their_combined_batch(tmp_path):
    ranks = fit(tmp_path / "ddp", *TANH_NET)
    (single,) = fit(tmp_path / "one", *TANH_NET, processes=1, batch=2 * BATCH).values()
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    assert_same_weights(ranks[0], single, rtol=1e-5, atol=1e-6)
    # one run folder for the job, written by rank 0 alone
    (run,) = (tmp_path / "ddp" / "runs" / "quickstart").iterdir()
    assert {p.name for p in run.iterdir()} == {"config.yaml", "checkpoints", "metrics.csv"}
    assert not torch.equal(single["head.weight"], fit_untrained_head(tmp_path))


def fit_untrained_head(folder: Path) -> torch.Tensor:
    """The head's weights as the seeded config initialises them (to see that training moved them)."""
    import ddp_helpers  # noqa: F401  (found on sys.path: pytest puts the tests folder there)
    from lightning.pytorch import seed_everything

    seed_everything(0)
    return ddp_helpers.TanhStackNet().head.weight


@pytest.mark.slow
def test_tied_weights_and_a_frozen_stage_under_ddp_match_one_process(tmp_path):
    frozen = [*TANH_NET, "--model.trainable_stages", "[2]"]  # train the tied stack only
    ranks = fit(tmp_path / "ddp", *frozen)
    (single,) = fit(tmp_path / "one", *frozen, processes=1, batch=2 * BATCH).values()
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    assert_same_weights(ranks[0], single, rtol=1e-5, atol=1e-6)
    initial = fit_untrained_state(tmp_path)
    assert torch.equal(single["untied.blocks.0.0.weight"], initial["untied.blocks.0.0.weight"])  # frozen
    assert not torch.equal(single["tied.blocks.0.0.weight"], initial["tied.blocks.0.0.weight"])  # trained


def fit_untrained_state(folder: Path) -> dict:
    import ddp_helpers
    from lightning.pytorch import seed_everything

    seed_everything(0)
    return ddp_helpers.TanhStackNet().state_dict()


@pytest.mark.slow
def test_with_batchnorm_the_adjoint_ranks_stay_identical(tmp_path):
    ranks = fit(tmp_path / "ddp", "--model.network.gradient", "[backprop, backprop, adjoint, backprop]",
                "--model.network.depth", "[2, 2, 6, 2]")  # fmt: skip
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs 2 GPUs (not verified on CPU)")
def test_syncbatchnorm_with_the_adjoint_keeps_ranks_identical_and_running_statistics_those_of_backprop(tmp_path):
    """The rebuild and recompute in backward run SyncBatchNorm in train mode: their collectives are
    issued in the same order on every rank (no deadlock) and their statistics are not counted twice."""
    simple = '{"class_path": "resnode_lightning.models.SimpleResNet", "init_args": {"depth": 8, "in_channels": 1}}'
    gpus = ["--config", "presets/ddp.yaml", "--trainer.devices", "2", "--model.network", simple,
            "--model.network.tied", "false"]  # fmt: skip
    runs = {
        gradient: fit(tmp_path / gradient, *gpus, "--model.network.gradient", gradient)
        for gradient in ("adjoint", "backprop")
    }
    assert_same_weights(runs["adjoint"][0], runs["adjoint"][1], rtol=0, atol=0)
    statistics = [key for key in runs["adjoint"][0] if "running_" in key or "num_batches" in key]
    assert statistics
    for key in statistics:
        torch.testing.assert_close(runs["adjoint"][0][key], runs["backprop"][0][key], rtol=1e-5, atol=1e-6)
