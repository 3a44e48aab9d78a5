"""The package's entry points and its layering."""

import subprocess
import sys

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
