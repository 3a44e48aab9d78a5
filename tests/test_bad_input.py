"""Bad input gets a clear error that names the field and the fix, before any training work, and
loses nothing. Each row of TABLE is a test; docs/troubleshooting.md shows the same table."""

import shutil
import sys
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnode_lightning.cli import main
from resnode_lightning.models import ResNet

TROUBLESHOOTING = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
QUICK = ["fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml", "--trainer.enable_progress_bar=false"]
CIFAR = ["fit", "--config", "cifar_adjoint.yaml", "--config", "presets/debug.yaml", "--model.network.depth=4"]

Row = namedtuple("Row", "what arguments expected message")  # expected: "exit" (status 2), an exception, "warning"

TABLE = [
    Row("a misspelt flag", [*QUICK, "--trainer.max_epochz", "3"], "exit", "Did you mean 'trainer.max_epochs'?"),
    Row("a misspelt key in a config file", [*QUICK, "--config", "{typo_config}"], "exit",
        "Did you mean 'model.label_smoothing'?"),
    Row("a value of the wrong type", [*QUICK, "--model.network.depth", "abc"], "exit", "Given value: abc"),
    Row("a depth of zero", [*QUICK, "--model.network.depth", "0"], "exit", "stage 1 has depth 0"),
    Row("a negative depth", [*QUICK, "--model.network.depth", "-3"], "exit", "stage 1 has depth -3"),
    Row("a depth list of the wrong length", [*QUICK, "--model.network.depth=[3, 3, 3]"], "exit",
        "has 3 values; give one value for all 4 stages or a list of 4"),
    Row("an unknown scheme", [*QUICK, "--model.network.scheme", "eulr"], "exit", "Given value: eulr"),
    Row("an unknown gradient mode", [*QUICK, "--model.network.gradient", "adjiont"], "exit", "Given value: adjiont"),
    Row("a trainable stage that does not exist", [*QUICK, "--model.trainable_stages=[7]"], "exit",
        "names no stage 7"),
    Row("anchor_every larger than the depth", [*QUICK, "--model.network.anchor_every", "9"], "warning",
        "anchor_every=9 is larger than the stack's depth"),
    Row("an unknown config name", ["fit", "--config", "cifar_ajdoint.yaml"], "exit",
        "no shipped config has that name"),
    Row("init_from: a missing file", [*QUICK, "--model.init_from", "nowhere.ckpt"], "exit",
        "init_from: 'nowhere.ckpt' does not exist"),
    Row("init_from: a checkpoint whose shapes do not fit", [*QUICK, "--model.init_from", "{narrow_checkpoint}"],
        "exit", "but the model's has shape"),
    Row("a data folder that is missing", [*CIFAR, "--data.root", "{tmp}/nowhere"], "exit", "No CIFAR-10 data under"),
    Row("a data folder that is empty", [*CIFAR, "--data.root", "{empty_tree}"], "exit", "has no class folders"),
    Row("a corrupt image", [*CIFAR, "--data.root", "{corrupt_tree}"], "exit", "Cannot decode the image"),
    Row("a test class folder named unlike train's", [*CIFAR, "--data.root", "{renamed_tree}"], "exit",
        "renamed/test: doggo"),
    Row("an empty class folder", [*CIFAR, "--data.root", "{empty_class_tree}"], "exit",
        "empty_class/train/cat holds no images"),
    Row("a test split at another resolution", [*CIFAR, "--data.root", "{resized_tree}"], "exit",
        "resized/test are 16x16"),
    Row("a batch size of zero", [*QUICK, "--data.init_args.batch_size", "0"], "exit",
        "data.batch_size must be a whole number >= 1"),
    Row("a negative learning rate", [*QUICK, "--model.optimizer.init_args.lr", "-0.1"], "exit",
        "model.optimizer: Invalid learning rate: -0.1"),
    Row("a negative number of epochs", [*QUICK, "--trainer.max_epochs", "-5"], "exit",
        "`max_epochs` must be a non-negative integer or -1"),
    Row("a negative checkpoint interval", [*QUICK, "--checkpoint.every_n_train_steps", "-3"], "exit",
        "Invalid value for every_n_train_steps=-3"),
    Row("label smoothing above 1", [*QUICK, "--model.label_smoothing", "2"], "exit",
        "model.label_smoothing=2.0 must lie in [0, 1)"),
    Row("negative label smoothing", [*QUICK, "--model.label_smoothing", "-0.5"], "exit",
        "model.label_smoothing=-0.5 must lie in [0, 1)"),
    Row("negative warm-up steps", [*QUICK, "--model.warmup_steps", "-10"], "exit",
        "model.warmup_steps=-10 must be an integer >= 0"),
    Row("an output folder that cannot be written", [*QUICK, "--trainer.default_root_dir", "{a_file}/runs"], "exit",
        "cannot create the run folder"),
    Row("a disk too full for the checkpoints", [*QUICK], "exit", "MiB free, but this run's checkpoints need"),
]  # fmt: skip


@pytest.fixture
def places(tmp_path, cifar_jpg_root, monkeypatch):
    """The files and folders the rows name, in an empty working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["resnode"])
    (tmp_path / "typo.yaml").write_text("modle:\n  label_smoothing: 0.1\n")
    torch.save(ResNet(depth=[3, 3, 3, 3], base_width=8, in_channels=1).state_dict(), tmp_path / "narrow.pt")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    corrupt = shutil.copytree(cifar_jpg_root, tmp_path / "corrupt")
    sorted((corrupt / "test" / "dog").iterdir())[3].write_bytes(b"not a JPEG")
    renamed = shutil.copytree(cifar_jpg_root, tmp_path / "renamed")
    (renamed / "test" / "dog").rename(renamed / "test" / "doggo")
    empty_class = shutil.copytree(cifar_jpg_root, tmp_path / "empty_class")
    for image in (empty_class / "train" / "cat").iterdir():
        image.unlink()
    resized = shutil.copytree(cifar_jpg_root, tmp_path / "resized")
    for image in (resized / "test").rglob("*.jpg"):
        Image.open(image).resize((16, 16)).save(image)
    (tmp_path / "a_file").write_text("")
    return {
        "typo_config": tmp_path / "typo.yaml", "narrow_checkpoint": tmp_path / "narrow.pt", "tmp": tmp_path,
        "empty_tree": tmp_path / "empty", "corrupt_tree": corrupt, "a_file": tmp_path / "a_file",
        "renamed_tree": renamed, "empty_class_tree": empty_class, "resized_tree": resized,
    }  # fmt: skip


@pytest.mark.parametrize("row", TABLE, ids=[row.what for row in TABLE])
def test_bad_input_gets_a_clear_message_before_training(row, places, capsys, monkeypatch, tmp_path):
    arguments = [argument.format(**places) for argument in row.arguments]
    if row.what.startswith("a disk too full"):
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 2**20))
    if row.expected == "exit":
        with pytest.raises(SystemExit) as exit:
            main(arguments)
        assert exit.value.code == 2
        assert row.message in capsys.readouterr().err
    elif row.expected == "warning":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            main(arguments)
        assert any(row.message in str(warning.message) for warning in caught)
        return  # a warning, and the run goes on
    else:
        with pytest.raises(row.expected, match=row.message):
            main(arguments)
    assert not list(tmp_path.rglob("*.ckpt"))  # stopped before any training step


def test_the_troubleshooting_page_shows_every_row_in_order():
    lines = [line for line in TROUBLESHOOTING.read_text().splitlines() if line.startswith("|")]
    shown = [line.strip("|").split(" | ") for line in lines[2:]]  # below the header and its rule
    assert len(shown) == len(TABLE), "docs/troubleshooting.md: one table row per row of TABLE"
    for (what, message, fix), row in zip(shown, TABLE):
        assert row.what in what and row.message in message and fix.strip(), row.what
