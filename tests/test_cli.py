"""The `resnode` command: shipped configs by name, one folder per run, resumable and re-runnable runs."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from resnode_lightning.cli import main
from resnode_lightning.cli.config_files import shipped_configs

EXPERIMENTS = sorted(name for name in shipped_configs() if "/" not in name)
DEBUG = ["--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]


pytestmark = pytest.mark.usefixtures("in_empty_folder")


def run(*args: str) -> None:
    main(list(args))


def printed_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit:
        run(*args, "--print_config")
    assert exit.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_resnode_configs_lists_every_shipped_config_with_what_it_is(capsys):
    with pytest.raises(SystemExit) as exit:
        run("configs")
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out
    assert "Figure 4 (CIFAR-10): the paper's simple ResNet at depth 64" in out


def test_a_shipped_config_is_found_by_its_bare_name_from_any_folder(capsys):
    config = printed_config(capsys, "fit", "--config", "cifar_adjoint.yaml")
    network = config["model"]["network"]
    assert network["class_path"] == "resnode_lightning.models.SimpleResNet"
    assert network["init_args"]["depth"] == 64 and network["init_args"]["gradient"] == "adjoint"


def test_a_path_that_exists_wins_over_a_shipped_name(capsys, in_empty_folder):
    shipped = yaml.safe_load(shipped_configs()["cifar_adjoint.yaml"].read_text())
    shipped["model"]["network"]["init_args"]["depth"] = 12
    (in_empty_folder / "cifar_adjoint.yaml").write_text(yaml.safe_dump(shipped))
    config = printed_config(capsys, "fit", "--config", "cifar_adjoint.yaml")
    assert config["model"]["network"]["init_args"]["depth"] == 12


def test_an_unknown_config_name_is_refused_in_one_line_with_the_closest_shipped_name(capsys):
    with pytest.raises(SystemExit) as exit:
        run("fit", "--config", "cifar_ajdoint.yaml")
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config 'cifar_ajdoint.yaml': no such file, and no shipped config has that name")
    assert "Did you mean 'cifar_adjoint.yaml'?" in err and "quickstart.yaml" not in err
    assert len(err.splitlines()) <= 2 and "usage" not in err


def test_configs_compose_left_to_right_and_dotted_flags_override_them(capsys):
    config = printed_config(
        capsys, "fit", "--config", "cifar_adjoint.yaml", "--config", "presets/debug.yaml",
        "--model.network.init_args.depth", "8", "--data.init_args.batch_size", "32",
    )  # fmt: skip
    assert config["trainer"]["limit_train_batches"] == 4 and config["trainer"]["max_epochs"] == 1
    assert config["model"]["network"]["init_args"]["depth"] == 8 and config["data"]["init_args"]["batch_size"] == 32
    assert config["model"]["network"]["init_args"]["scheme"] == "heun"  # untouched keys survive


def test_help_shows_the_modules_own_arguments_with_their_docstrings(capsys):
    with pytest.raises(SystemExit):
        run("fit", "--help")
    out = capsys.readouterr().out
    assert "--model.init_from" in out and "--model.label_smoothing" in out
    assert "--model.trainable_stages" in out and "--checkpoint.monitor" in out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_shipped_config_parses_against_todays_signatures(capsys, name):
    config = printed_config(capsys, "fit", "--config", name)
    assert config["model"]["network"]["class_path"].startswith("resnode_lightning.models.")
    assert isinstance(config["seed_everything"], int)


def test_fit_writes_each_run_into_its_own_folder_and_nothing_elsewhere(capsys, in_empty_folder):
    run("fit", "--config", "quickstart.yaml", *DEBUG)
    assert "Done. Checkpoints: runs/quickstart/version_0/checkpoints/best.ckpt" in capsys.readouterr().out
    run("fit", "--config", "quickstart.yaml", *DEBUG)
    assert [p.name for p in in_empty_folder.iterdir()] == ["runs"]
    runs = in_empty_folder / "runs" / "quickstart"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    for version in runs.iterdir():
        assert {"config.yaml", "metrics.csv", "checkpoints"} <= {p.name for p in version.iterdir()}
        assert {p.name for p in (version / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    metrics = (runs / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/acc", "train/lr", "val/acc1", "val/acc5"} <= set(metrics)


def test_lightnings_learning_rate_monitor_logs_each_parameter_groups_rate_every_step(in_empty_folder):
    groups = ["--model.no_weight_decay_on_norms_and_biases", "true", "--model.warmup_steps", "4"]
    run("fit", "--config", "quickstart.yaml", *DEBUG, *groups)
    with (in_empty_folder / "runs" / "quickstart" / "version_0" / "metrics.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row["train/lr/rest"]]
    assert [float(row["train/lr/rest"]) for row in rows] == pytest.approx([0.01, 0.02, 0.03, 0.04])  # warm-up to 0.04
    assert [row["train/lr/no_decay"] for row in rows] == [row["train/lr/rest"] for row in rows]


def test_the_closing_line_names_only_the_checkpoints_the_run_kept(capsys):
    run("fit", "--config", "quickstart.yaml", *DEBUG, "--checkpoint.save_last", "false")
    done = capsys.readouterr().out.split("Done. ")[-1]
    assert done.startswith("Checkpoints: runs/quickstart/version_0/checkpoints/best.ckpt (val/acc1 0.")
    assert "last.ckpt" not in done and "), ;" not in done
    run("fit", "--config", "quickstart.yaml", *DEBUG, "--checkpoint.save_last", "false",
        "--checkpoint.every_n_train_steps", "1")  # fmt: skip
    assert "best.ckpt (val/acc1 0." in (done := capsys.readouterr().out) and "version_1/checkpoints/last.ckpt" in done


def test_without_a_logger_each_run_still_gets_its_own_folder(in_empty_folder):
    for _ in range(2):
        run("fit", "--config", "quickstart.yaml", *DEBUG, "--trainer.logger", "false")
    for version in ("version_0", "version_1"):
        folder = in_empty_folder / "runs" / "quickstart" / version
        assert {p.name for p in folder.iterdir()} == {"config.yaml", "checkpoints"}


def test_the_saved_config_reruns_the_same_run_and_checkpoints_validate_and_test(capsys, in_empty_folder):
    run("fit", "--config", "quickstart.yaml", *DEBUG)
    first = in_empty_folder / "runs" / "quickstart" / "version_0"
    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["trainer"]["logger"]["init_args"]["name"] == "quickstart"
    run("fit", "--config", str(first / "config.yaml"))  # the resolved config, as it was saved
    second = in_empty_folder / "runs" / "quickstart" / "version_1"
    assert yaml.safe_load((second / "config.yaml").read_text())["model"] == saved["model"]
    checkpoint = torch.load(first / "checkpoints" / "best.ckpt", weights_only=True)
    capsys.readouterr()
    for subcommand in ("validate", "test"):
        run(subcommand, "--config", "quickstart.yaml", *DEBUG, "--ckpt_path", str(first / "checkpoints" / "best.ckpt"))
    out = capsys.readouterr().out
    best = checkpoint["callbacks"][next(k for k in checkpoint["callbacks"] if "ModelCheckpoint" in k)]
    assert f"{best['best_model_score'].item():.4f}"[:5] in out  # validate reproduces the checkpoint's score
    assert "test/acc1" in out


def finished_run(folder: Path) -> dict:
    """The last logged validation metrics of a run folder, after checking what the run wrote."""
    assert {p.name for p in (folder / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert (folder / "config.yaml").is_file()
    rows = (folder / "metrics.csv").read_text().splitlines()
    logged = [dict(zip(rows[0].split(","), row.split(","))) for row in rows[1:]]
    return next(row for row in reversed(logged) if row["val/acc1"])


def test_the_cifar_family_trains_on_real_cifar_images(cifar_jpg_root, in_empty_folder):
    run(
        "fit", "--config", "cifar_adjoint.yaml", *DEBUG, "--data.init_args.root", str(cifar_jpg_root),
        "--data.init_args.batch_size", "32", "--model.network.init_args.depth", "4",
    )  # fmt: skip
    folder = in_empty_folder / "runs" / "cifar_adjoint" / "version_0"
    metrics = finished_run(folder)
    assert 0 <= float(metrics["val/acc1"]) <= 1 and float(metrics["val/acc5"]) >= float(metrics["val/acc1"])
    header = (folder / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"system/step_seconds", "system/peak_memory_mib"} <= set(header)


def test_the_cifar_table_2_workflow_runs_as_two_configs(cifar_jpg_root, in_empty_folder):
    small = ["--data.init_args.root", str(cifar_jpg_root), "--data.init_args.batch_size", "32",
             "--model.network.init_args.base_width", "4"]  # fmt: skip
    run("fit", "--config", "cifar_tied_pretrain.yaml", *DEBUG, *small)
    run("fit", "--config", "cifar_untie_finetune.yaml", *DEBUG, *small, "--model.network.init_args.depth=[4, 4, 9, 4]")
    folder = in_empty_folder / "runs" / "cifar_untie_finetune" / "version_0"
    finished_run(folder)
    tuned = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    # the run folder the config names is resolved to the checkpoint file it found, which the run records
    assert tuned["hyper_parameters"]["init_from"] == "runs/cifar_tied_pretrain/version_0/checkpoints/best.ckpt"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["model"]["init_from"] == "runs/cifar_tied_pretrain/version_0/checkpoints/best.ckpt"
    assert tuned["hyper_parameters"]["trainable_stages"] == [3]
    assert "network.stages.2.stack.blocks.7.conv1.weight" in tuned["state_dict"]


@pytest.mark.parametrize("decode", ["workers", "device"])
def test_the_imagenet_family_trains_on_a_real_jpeg_tree(cifar_jpg_root, in_empty_folder, decode):
    run(
        "fit", "--config", "imagenet_resnet101_adjoint_stage3.yaml", *DEBUG,
        "--data.init_args.root", str(cifar_jpg_root), "--data.init_args.val_dir", "test",
        "--data.init_args.image_size", "32", "--data.init_args.num_classes", "10",
        "--data.init_args.batch_size", "16", "--data.init_args.num_workers", "2", "--data.init_args.decode", decode,
        "--model.network.init_args.num_classes", "10", "--model.network.init_args.base_width", "4",
        "--model.network.init_args.depth=[2, 2, 4, 2]",
    )  # fmt: skip
    metrics = finished_run(in_empty_folder / "runs" / "imagenet_resnet101_adjoint_stage3" / "version_0")
    assert 0 <= float(metrics["val/acc1"]) <= 1


@pytest.mark.slow
def test_two_runs_started_at_once_in_one_folder_write_two_run_folders(in_empty_folder):
    command = [sys.executable, "-m", "resnode_lightning", "fit", "--config", "quickstart.yaml", *DEBUG]
    processes = [subprocess.Popen(command, cwd=in_empty_folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]  # fmt: skip
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    runs = in_empty_folder / "runs" / "quickstart"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    for version in runs.iterdir():
        assert {p.name for p in (version / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
        assert (version / "config.yaml").is_file() and (version / "metrics.csv").is_file()


INT_OR_FLOAT_TRAINER_OPTIONS = [
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
    "overfit_batches", "val_check_interval",
]  # fmt: skip


@pytest.mark.parametrize("option", INT_OR_FLOAT_TRAINER_OPTIONS)
def test_an_int_or_float_trainer_option_given_as_a_whole_number_reaches_lightning_as_a_count(capsys, option):
    """`1` is one batch for Lightning and `1.0` all of them: the parser must not turn one into the other."""
    flags = printed_config(capsys, "fit", "--config", "quickstart.yaml", f"--trainer.{option}", "3")
    assert flags["trainer"][option] == 3 and isinstance(flags["trainer"][option], int)
    fraction = printed_config(capsys, "fit", "--config", "quickstart.yaml", f"--trainer.{option}", "1.0")
    assert fraction["trainer"][option] == 1.0 and isinstance(fraction["trainer"][option], float)
    Path("given.yaml").write_text(f"trainer:\n  {option}: 2\n")
    from_yaml = printed_config(capsys, "fit", "--config", "quickstart.yaml", "--config", "given.yaml")
    assert from_yaml["trainer"][option] == 2 and isinstance(from_yaml["trainer"][option], int)


def test_limit_val_batches_1_validates_one_batch(capsys):
    cli = main(["fit", "--config", "quickstart.yaml", *DEBUG, "--trainer.limit_val_batches", "1"])
    assert cli.trainer.num_val_batches == [1]


@pytest.mark.parametrize(
    "arguments",
    [["fit", "--trainer.max_epochz", "3"], ["validate", "--modle.lr", "1"], ["test", "--nope"],
     ["predict", "--nope"], ["gradcheck", "--depthz", "[2]"], ["sweep", "--dry_rn", "x.yaml"], ["configs", "--x"]],
    ids=lambda arguments: arguments[0],
)  # fmt: skip
def test_every_subcommand_reports_a_parse_error_in_one_line_first_with_where_to_look(capsys, arguments):
    with pytest.raises(SystemExit) as exit:
        run(*arguments)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[0].startswith("error: ") and len(error) <= 3 and not any("usage" in line for line in error)
    assert f"resnode {arguments[0]} --help" in error[-1]
