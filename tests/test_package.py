"""The package's entry points and its layering."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnode_lightning import __version__
from resnode_lightning.cli import main


def test_resnode_prints_its_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exit:
        assert exit.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "resnode_lightning", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: resnode" in done.stdout


def test_numerics_and_models_import_torch_only():
    code = (
        "import sys, resnode_lightning.numerics, resnode_lightning.models; "
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_a_non_editable_install_finds_the_shipped_configs_from_any_folder(tmp_path):
    """`pip install .` (not -e), then `cd elsewhere && resnode fit --config cifar_adjoint.yaml --print_config`."""
    repository = Path(__file__).resolve().parents[1]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheel", repository],
                   check=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("resnode_lightning-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [tmp_path / "site" / "bin" / "resnode", "fit", "--config", "cifar_adjoint.yaml", "--print_config"],
        cwd=elsewhere, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "class_path: resnode_lightning.models.SimpleResNet" in done.stdout
    where = subprocess.run([sys.executable, "-c", "import resnode_lightning; print(resnode_lightning.__file__)"],
                           cwd=elsewhere, env=environment, capture_output=True, text=True)  # fmt: skip
    assert where.stdout.startswith(str(tmp_path / "site"))
    assert list(elsewhere.iterdir()) == []
    # the console script ends a run with exit status 0 (make quickstart chains two runs on it)
    tiny = ["fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml"]
    run = subprocess.run([tmp_path / "site" / "bin" / "resnode", *tiny], cwd=elsewhere, env=environment,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt").is_file()
