"""`resnode sweep`: a W&B sweep file expands here into the runs W&B's agent would start, which run one
after another, each once, a killed sweep continuing where it stopped."""

import json
import math
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from resnode_lightning.cli import main
from resnode_lightning.training.config_files import shipped_configs
from resnode_lightning.training.sweep_files import SweepFileError, check_sweep, command_line, expand

SWEEPS = {"sweeps/figure4.yaml": 24, "sweeps/figure3a.yaml": 10}
"""Every shipped sweep and its number of runs."""
DEBUG = ["--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]


pytestmark = pytest.mark.usefixtures("in_empty_folder")


def sweep_file(folder: Path, stem: str, /, **sweep) -> Path:
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def dry_run(capsys, *args: str) -> list[list[str]]:
    main(["sweep", "--dry-run", *args])
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def grid(**parameters) -> dict:
    return {"program": "resnode", "method": "grid", "parameters": parameters, "command": ["resnode", "${args}"]}


def test_the_shipped_sweeps_are_listed_as_their_own_group(capsys):
    main(["configs"])
    out = capsys.readouterr().out
    group = out[out.index("W&B sweeps") :]
    assert set(SWEEPS) == {name for name in shipped_configs() if name.startswith("sweeps/")}
    assert all(name in group for name in SWEEPS) and "Figure 4 (CIFAR-10) as a W&B sweep" in group


@pytest.mark.parametrize("name", SWEEPS)
def test_every_shipped_sweep_expands_to_distinct_command_lines_the_cli_accepts(capsys, name):
    commands = dry_run(capsys, name)
    assert len(commands) == len({shlex.join(c) for c in commands}) == SWEEPS[name]
    for command in commands:
        assert command[:3] == ["resnode", "fit", "--config"]  # the config before the swept flags (P5)
        with pytest.raises(SystemExit) as exit:
            main([*command[1:], "--print_config"])
        assert exit.value.code == 0
        network = yaml.safe_load(capsys.readouterr().out)["model"]["network"]["init_args"]
        for flag in command[4:]:
            key, value = flag.removeprefix("--model.network.").split("=")
            assert str(network[key]) == value  # the swept value reached the model


def test_an_unknown_sweep_name_is_refused_with_the_shipped_sweeps(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "sweeps/figure5.yaml"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "'sweeps/figure5.yaml': no such file, and no shipped sweep has that name" in err
    assert all(name in err for name in SWEEPS)


def test_count_and_extra_args_shape_the_dry_run(capsys):
    commands = dry_run(capsys, "sweeps/figure4.yaml", "--count", "3", "--", "--data.root", "/data/cifar10")
    assert [c[4:] for c in commands] == [
        ["--data.root", "/data/cifar10", "--model.network.depth=2", "--model.network.scheme=euler",
         "--model.network.gradient=backprop"],
        ["--data.root", "/data/cifar10", "--model.network.depth=2", "--model.network.scheme=euler",
         "--model.network.gradient=adjoint"],
        ["--data.root", "/data/cifar10", "--model.network.depth=2", "--model.network.scheme=heun",
         "--model.network.gradient=backprop"],
    ]  # fmt: skip


def test_a_grid_is_the_product_of_every_parameters_values_in_the_files_order():
    sweep = grid(depth={"values": [2, 4]}, width={"value": 16}, tied={"values": [True, False]})
    assert expand(sweep) == [
        {"depth": 2, "width": 16, "tied": True},
        {"depth": 2, "width": 16, "tied": False},
        {"depth": 4, "width": 16, "tied": True},
        {"depth": 4, "width": 16, "tied": False},
    ]
    assert expand(sweep, count=3) == expand(sweep)[:3] == expand({**sweep, "run_cap": 3})


def test_random_draws_are_seeded_counted_and_within_each_distributions_bounds():
    parameters = {
        "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1},
        "momentum": {"distribution": "uniform", "min": 0.8, "max": 0.99},
        "depth": {"distribution": "int_uniform", "min": 2, "max": 5},
        "width": {"distribution": "q_uniform", "min": 8, "max": 64, "q": 8},
        "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.125},
        "blocks": {"min": 1, "max": 3},  # no distribution: int_uniform, as W&B infers it
        "scheme": {"values": ["euler", "heun"]},
        "epochs": {"value": 90},
    }
    sweep = {**grid(**parameters), "method": "random"}
    check_sweep(sweep)
    runs = expand(sweep, count=400, seed=3)
    assert len(runs) == 400 and runs == expand(sweep, count=400, seed=3) != expand(sweep, count=400, seed=4)
    assert all(1.0e-4 <= r["lr"] <= 1.0e-1 and 0.8 <= r["momentum"] <= 0.99 for r in runs)
    below_geometric_mean = sum(r["lr"] < math.sqrt(1.0e-4 * 1.0e-1) for r in runs) / len(runs)
    assert 0.4 < below_geometric_mean < 0.6  # uniform in the logarithm
    assert {r["depth"] for r in runs} == {2, 3, 4, 5} and {r["blocks"] for r in runs} == {1, 2, 3}  # ends included
    assert {r["width"] for r in runs} <= {8, 16, 24, 32, 40, 48, 56, 64} and all(type(r["width"]) is int for r in runs)
    assert {r["dropout"] for r in runs} <= {0.0, 0.125, 0.25, 0.375, 0.5}
    assert {r["scheme"] for r in runs} == {"euler", "heun"} and {r["epochs"] for r in runs} == {90}


def test_a_random_sweep_needs_a_count():
    sweep = {**grid(lr={"min": 0.01, "max": 0.1}), "method": "random"}
    with pytest.raises(SweepFileError, match="--count N"):
        expand(sweep)
    assert len(expand({**sweep, "run_cap": 5})) == 5


def test_macros_are_formatted_as_wandbs_agent_formats_them(monkeypatch):
    monkeypatch.setenv("DATA", "/data/cifar10")
    run = {"depth": [3, 3, 3, 3], "tied": False, "lr": 0.05, "step": "1/depth"}
    command = ["${env}", "${interpreter}", "${program}", "--root=${envvar:DATA}",
               "${args}", "${args_no_hyphens}", "${args_no_boolean_flags}"]  # fmt: skip
    sweep = {"program": "train.py", "method": "grid", "parameters": {"lr": {"value": 0.1}}, "command": command}
    check_sweep(sweep)
    assert command_line(sweep, run) == [
        "/usr/bin/env", "python", "train.py", "--root=/data/cifar10",
        "--depth=[3, 3, 3, 3]", "--tied=False", "--lr=0.05", "--step=1/depth",
        "depth=[3, 3, 3, 3]", "tied=False", "lr=0.05", "step=1/depth",
        "--depth=[3, 3, 3, 3]", "--lr=0.05", "--step=1/depth",
    ]  # fmt: skip
    assert command_line({"program": "train.py"}, {"lr": 0.1}) == ["/usr/bin/env", "python", "train.py", "--lr=0.1"]


def test_extra_args_go_before_the_swept_flags_so_that_a_config_among_them_cannot_undo_them():
    sweep = {"command": ["resnode", "fit", "--config", "quickstart.yaml", "${args}", "--seed_everything=1"]}
    assert command_line(sweep, {"trainer.max_epochs": 3}, ["--config", "presets/debug.yaml"]) == [
        "resnode", "fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml", "--trainer.max_epochs=3",
        "--seed_everything=1",
    ]  # fmt: skip
    assert command_line({"command": ["resnode", "fit"]}, {}, ["--x=1"]) == ["resnode", "fit", "--x=1"]


LR = {"lr": {"values": [0.1]}}
REFUSED = [
    ({**grid(**LR), "paramters": {}}, "unknown key 'paramters' (did you mean 'parameters'?)"),
    (grid(lr={"valeus": [0.1]}), "parameter 'lr': unknown key 'valeus' (did you mean 'values'?)"),
    (grid(lr={"values": [0.1], "color": 1}), "The accepted keys are value, values, distribution, min, max"),
    ({**grid(**LR), "command": ["${argz}"]}, "macro ${argz} is unknown here (did you mean 'args'?)"),
    (grid(lr={"min": 0.01, "max": 0.1}), "a grid needs `values` or `value`; draw from `uniform` with `method: random`"),
    (grid(lr={"distribution": "log_uniform", "min": -5, "max": 0}), "log_uniform_values takes the values themselves"),
    (grid(lr={"values": []}), "parameter 'lr': `values` must be a non-empty list"),
    ({**grid(**LR), "method": "bayes"}, "`method: bayes` chooses each run from the results of the earlier ones"),
]


@pytest.mark.parametrize("sweep, message", REFUSED)
def test_a_sweep_file_the_local_expansion_cannot_run_is_refused_before_anything_runs(capsys, sweep, message):
    with pytest.raises(SweepFileError) as error:
        check_sweep(sweep)
    assert message in str(error.value)
    path = sweep_file(Path.cwd(), "refused", **sweep)
    with pytest.raises(SystemExit) as exit:
        main(["sweep", str(path)])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not Path("runs").exists()


def test_a_failed_run_is_reported_the_sweep_goes_on_and_only_it_runs_again(capsys, in_empty_folder):
    """Each run appends its flag and its W&B group to `log`; the run with x=2 fails."""
    code = "import os, sys; open('log', 'a').write(sys.argv[1] + ' ' + os.environ['WANDB_RUN_GROUP'] + '\\n'); "
    code += "sys.exit(sys.argv[1] == '--x=2')"
    path = sweep_file(in_empty_folder, "file", name="tiny", method="grid", parameters={"x": {"values": [1, 2, 3]}},
                      command=[sys.executable, "-c", code, "${args}"])  # fmt: skip
    with pytest.raises(SystemExit) as exit:
        main(["sweep", str(path)])
    assert exit.value.code == 1
    out = capsys.readouterr().out
    assert "[sweep tiny: run 2 of 3] failed with exit code 1; the sweep goes on." in out
    assert "Sweep tiny: 3 runs here, 0 finished before, 1 failed\n  failed: " in out
    assert (in_empty_folder / "log").read_text() == "--x=1 tiny\n--x=2 tiny\n--x=3 tiny\n"
    state = json.loads((in_empty_folder / "runs" / "sweeps" / "tiny.json").read_text())
    assert [entry["status"] for entry in state.values()] == ["finished", "failed", "finished"]

    with pytest.raises(SystemExit):
        main(["sweep", str(path)])
    assert (in_empty_folder / "log").read_text().splitlines()[3:] == ["--x=2 tiny"]
    assert "[sweep tiny: run 2 of 3] (failed before)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_local_sweep_runs_each_run_once_into_its_own_folder_and_continues_where_it_stopped(capsys, in_empty_folder):
    path = sweep_file(in_empty_folder, "lr", program="resnode", method="grid",
                      parameters={"model.optimizer.lr": {"values": [0.05, 0.2]}},
                      command=["resnode", "fit", "--config", "quickstart.yaml", "${args}"])  # fmt: skip
    main(["sweep", str(path), "--", *DEBUG])
    runs = in_empty_folder / "runs" / "quickstart"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    state_file = in_empty_folder / "runs" / "sweeps" / "lr.json"
    state = json.loads(state_file.read_text())
    assert [entry["status"] for entry in state.values()] == ["finished", "finished"]
    for line, entry in state.items():  # each run folder is the one of its command line
        saved = yaml.safe_load((Path(entry["run_folder"]) / "config.yaml").read_text())
        assert line.endswith(f"--model.optimizer.lr={saved['model']['optimizer']['init_args']['lr']}")

    capsys.readouterr()
    main(["sweep", str(path), "--", *DEBUG])
    assert capsys.readouterr().out.count("finished before (runs/quickstart/version_") == 2
    assert len(list(runs.iterdir())) == 2

    first = next(iter(state))
    state_file.write_text(json.dumps({line: entry for line, entry in state.items() if line != first}))
    main(["sweep", str(path), "--", *DEBUG])
    assert "Sweep lr: 1 run here, 1 finished before, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1", "version_2"]
    assert json.loads(state_file.read_text())[first]["run_folder"] == "runs/quickstart/version_2"
