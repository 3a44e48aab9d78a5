"""W&B: offline by itself without an account, the whole config nested, one run per job; run names."""

import json
import os
import subprocess
import sys

import pytest

from resnode_lightning.cli.app import run_title

BLOCK, HEADER, RECORD_HEADER = 32768, 7, 7  # wandb's transaction log: ":W&B" + magic + version, then
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4  # leveldb-style records (crc32, length, type) in 32 KiB blocks


def wandb_records(path) -> list:
    """The protobuf Records an offline run wrote into its ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data, position, pieces, records = path.read_bytes(), HEADER, b"", []
    assert data[:4] == b":W&B"
    while position + RECORD_HEADER <= len(data):
        if BLOCK - position % BLOCK < RECORD_HEADER:  # a block's tail too short for a record: padding
            position += BLOCK - position % BLOCK
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        payload = data[position + RECORD_HEADER : position + RECORD_HEADER + length]
        position += RECORD_HEADER + length
        pieces = payload if kind in (FULL, FIRST) else pieces + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


def logged(records) -> tuple[dict, set, dict]:
    """The run's config (key → value), the metric names of its history and its final summary."""
    config, history, summary = {}, set(), {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.update(item.key or "/".join(item.nested_key) for item in record.history.item)
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})  # fmt: skip
    return config, history, summary


def test_a_run_is_named_after_its_config_and_the_values_its_flags_changed():
    from_files = {"model.network.init_args.depth": 64, "model.optimizer.init_args.lr": 0.1, "data.batch_size": 128}
    given = {**from_files, "model.network.init_args.depth": 32, "model.optimizer.init_args.lr": 0.05}
    title = run_title("cifar_adjoint", given, from_files)
    assert title == "cifar_adjoint model.network.init_args.depth=32 model.optimizer.init_args.lr=0.05"


def test_the_cli_names_a_wandb_run_after_the_flags_however_they_are_spelt(in_empty_folder):
    from resnode_lightning.cli import main

    cli = main(["fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml",
                "--trainer.enable_progress_bar", "false", "--model.optimizer.init_args.lr=0.0123",
                "--trainer.max_epochs", "1", "--trainer.logger+=lightning.pytorch.loggers.WandbLogger"])  # fmt: skip
    assert cli.title == "quickstart trainer.enable_progress_bar=False model.optimizer.init_args.lr=0.0123"


@pytest.mark.slow
def test_whether_a_run_goes_online_is_wandbs_own_answer_to_whether_this_machine_has_an_account(tmp_path):
    """No account: offline. A `wandb login` entry in ~/.netrc, as wandb writes it: online."""
    check = (
        "import pathlib, sys; from resnode_lightning.cli.tracking import offline_by_default\n"
        "print(offline_by_default())\n"
        "netrc = pathlib.Path(sys.argv[1]) / '.netrc'\n"
        "netrc.write_text('machine api.wandb.ai\\n  login user\\n  password ' + 'k' * 40 + '\\n'); netrc.chmod(0o600)\n"
        "print(offline_by_default())\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    environment["HOME"] = str(tmp_path)
    environment["WANDB_SILENT"] = "true"  # no "logged in as": its look-up waits 5 s for the network there is not
    done = subprocess.run([sys.executable, "-c", check, str(tmp_path)], env=environment, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "False"]


def test_without_an_account_a_run_goes_offline_and_its_wandb_folder_holds_the_config_and_metrics(
    tmp_path, cifar_jpg_root
):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    environment["HOME"] = str(tmp_path)  # no ~/.netrc: no W&B account on this machine
    done = subprocess.run(
        [sys.executable, "-m", "resnode_lightning", "fit", "--config", "cifar_adjoint.yaml",
         "--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false",
         "--data.root", str(cifar_jpg_root), "--data.batch_size", "32", "--model.network.depth", "4"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (wandb_run,) = (tmp_path / "runs" / "cifar_adjoint" / "version_0" / "wandb").glob("offline-run-*")
    printed = done.stdout + done.stderr
    for harmless in ("anonymous setting has no effect", "exists and is not empty", "Tip:", "LeafSpec"):
        assert harmless not in printed  # nothing that misleads (cli/quiet.py, training/logs.py)
    assert printed.count("wandb sync") == 1 and f"wandb sync {wandb_run.relative_to(tmp_path)}" in printed
    (log,) = wandb_run.glob("run-*.wandb")
    config, history, summary = logged(wandb_records(log))
    network = config["model"]["network"]  # nested as in the YAML file, not flattened
    assert network["class_path"] == "resnode_lightning.models.SimpleResNet" and network["init_args"]["depth"] == 4
    assert config["data"]["init_args"]["root"] == str(cifar_jpg_root)
    assert {
        "train/loss",
        "train/acc",
        "val/acc1",
        "val/acc5",
        "system/step_seconds",
        "system/peak_memory_mib",
    } <= history
    assert summary["best_checkpoint"] == "runs/cifar_adjoint/version_0/checkpoints/best.ckpt"


@pytest.mark.parametrize(("rank", "looked_up"), [(0, True), (1, False)])
def test_only_rank_0_asks_wandb_for_an_account_the_others_stay_offline(monkeypatch, rank, looked_up):
    """Lightning creates the W&B run on rank 0 alone: the other ranks neither log in nor wait for a
    network, their (unused) loggers are offline."""
    from jsonargparse import Namespace

    from resnode_lightning.cli import app

    asked = []
    monkeypatch.setattr(app, "launched_rank", lambda: rank)
    monkeypatch.setattr(app, "offline_by_default", lambda: asked.append(True) or False)
    logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(offline=False))
    app.point_loggers([logger], app.Path("runs"), app.Path("runs/net/version_0"))
    assert bool(asked) == looked_up
    assert logger.init_args.offline is (rank > 0)
