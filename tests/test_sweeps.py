"""`resnode sweep`: a W&B grid sweep file expands here into the resnode command lines W&B's agent would
start, each checked by resnode's parser before any runs; the runs run one after another, each once, die
with their sweep, and a stopped sweep continues where it stopped."""

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resnode_lightning.cli import main, sweeps
from resnode_lightning.cli.config_files import shipped_configs
from resnode_lightning.cli.runs import announce
from resnode_lightning.cli.sweep_files import SweepFileError, check_sweep, command_line, expand, read_sweep

SWEEPS = {"sweeps/figure4.yaml": 24, "sweeps/figure3a.yaml": 10}
"""Every shipped sweep and its number of runs."""
DEBUG = ["--config", "presets/debug.yaml", "--trainer.enable_progress_bar", "false"]
TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent

pytestmark = pytest.mark.usefixtures("in_empty_folder")


def sweep_file(folder: Path, stem: str, /, **sweep) -> Path:
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def dry_run(capsys, *args: str) -> list[list[str]]:
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "--dry_run", *args])
    assert exit.value.code == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def run_sweep(*args: str) -> int:
    """`resnode sweep ARGS` in this process: its exit status."""
    with pytest.raises(SystemExit) as exit:
        main(["sweep", *args])
    return exit.value.code


def grid(**parameters) -> dict:
    return {"method": "grid", "parameters": parameters, "command": ["resnode", "fit", "${args}"]}


def state(folder: Path, name: str) -> dict[str, dict]:
    return json.loads((folder / "runs" / "sweeps" / f"{name}.json").read_text())


# -- the sweep file -----------------------------------------------------------------------------------
def test_the_shipped_sweeps_are_listed_as_their_own_group(capsys):
    with pytest.raises(SystemExit):
        main(["configs"])
    out = capsys.readouterr().out
    group = out[out.index("W&B sweeps") :]
    assert set(SWEEPS) == {name for name in shipped_configs() if name.startswith("sweeps/")}
    assert all(name in group for name in SWEEPS) and "Figure 4 (CIFAR-10) as a W&B sweep" in group


@pytest.mark.parametrize("name", SWEEPS)
def test_every_shipped_sweep_expands_to_distinct_resnode_fit_command_lines_config_first(name):
    sweep = read_sweep(shipped_configs()[name])
    commands = [command_line(sweep, run) for run in expand(sweep)]
    assert len(commands) == len({shlex.join(c) for c in commands}) == SWEEPS[name]
    assert all(command[:3] == ["resnode", "fit", "--config"] for command in commands)  # before the swept flags


@pytest.mark.parametrize("name", SWEEPS)
def test_the_swept_values_reach_the_model(capsys, name):
    commands = dry_run(capsys, "--count", "2", name)
    for command in commands:
        with pytest.raises(SystemExit) as exit:
            main([*command[1:], "--print_config"])
        assert exit.value.code == 0
        network = yaml.safe_load(capsys.readouterr().out)["model"]["network"]["init_args"]
        for flag in command[4:]:
            key, value = flag.removeprefix("--model.network.").split("=")
            assert str(network[key]) == value


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEPS)
def test_resnode_accepts_every_command_line_of_every_shipped_sweep(capsys, name):
    assert len(dry_run(capsys, name)) == SWEEPS[name]  # the dry run parses each


def test_an_unknown_sweep_name_is_refused_with_the_shipped_sweeps(capsys):
    assert run_sweep("sweeps/figure5.yaml") == 2
    err = capsys.readouterr().err
    assert "'sweeps/figure5.yaml': no such file, and no shipped sweep has that name" in err
    assert all(name in err for name in SWEEPS)


def test_count_and_extra_args_shape_the_dry_run(capsys):
    commands = dry_run(capsys, "--count", "3", "sweeps/figure4.yaml", "--", "--data.root", "/data/cifar10")
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


def test_macros_are_formatted_as_wandbs_agent_formats_them(monkeypatch):
    monkeypatch.setenv("DATA", "/data/cifar10")
    run = {"depth": [3, 3, 3, 3], "tied": False, "lr": 0.05, "step": "1/depth"}
    command = ["${env}", "${interpreter}", "-m", "resnode_lightning", "fit", "--data.root=${envvar:DATA}",
               "${args}", "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}"]  # fmt: skip
    sweep = {**grid(lr={"value": 0.1}), "command": command}
    check_sweep(sweep)
    assert command_line(sweep, run) == [
        "resnode", "fit", "--data.root=/data/cifar10",
        "--depth=[3, 3, 3, 3]", "--tied=False", "--lr=0.05", "--step=1/depth",
        "depth=[3, 3, 3, 3]", "tied=False", "lr=0.05", "step=1/depth",
        "--depth=[3, 3, 3, 3]", "--lr=0.05", "--step=1/depth",
        '{"depth": [3, 3, 3, 3], "tied": false, "lr": 0.05, "step": "1/depth"}',
    ]  # fmt: skip
    assert command_line(sweep, {"tied": True})[-2] == "--tied"
    monkeypatch.delenv("DATA")
    with pytest.raises(SweepFileError, match=r"names \$\{envvar:DATA\}, and DATA is not set here"):
        command_line(sweep, run)


def test_extra_args_go_before_the_swept_flags_so_that_a_config_among_them_cannot_undo_them():
    sweep = {"command": ["resnode", "fit", "--config", "quickstart.yaml", "${args}", "--seed_everything=1"]}
    assert command_line(sweep, {"trainer.max_epochs": 3}, ["--config", "presets/debug.yaml"]) == [
        "resnode", "fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml", "--trainer.max_epochs=3",
        "--seed_everything=1",
    ]  # fmt: skip
    assert command_line({"command": ["resnode", "fit"]}, {}, ["--x=1"]) == ["resnode", "fit", "--x=1"]


@pytest.mark.parametrize(
    "command, program",
    [
        (["resnode", "fit"], None),
        (["${env}", "resnode", "fit"], None),
        (["${env}", "${program}", "fit"], "resnode"),
        (["python", "-m", "resnode_lightning", "fit"], None),
        (["${env}", "${interpreter}", "-m", "resnode_lightning", "fit"], "anything.py"),
    ],
)
def test_a_command_that_runs_resnode_is_run_as_this_interpreters_resnode(command, program):
    sweep = {**grid(lr={"value": 0.1}), "command": [*command, "${args}"]}
    sweep.update({"program": program} if program else {})
    check_sweep(sweep)
    assert command_line(sweep, {"lr": 0.1}) == ["resnode", "fit", "--lr=0.1"]
    assert sweeps.RESNODE == [sys.executable, "-m", "resnode_lightning"]  # what starts, whatever the spelling


LR = {"lr": {"values": [0.1]}}
REFUSED = [
    ({**grid(**LR), "paramters": {}}, "unknown key 'paramters' (did you mean 'parameters'?)"),
    (grid(lr={"valeus": [0.1]}), "parameter 'lr': unknown key 'valeus' (did you mean 'values'?)"),
    (grid(lr={"values": [0.1], "color": 1}), "The accepted keys are values, value."),
    (grid(lr={"values": [0.1], "value": 1}), "give `values` (a list) or `value` (one value), one of the two"),
    ({**grid(**LR), "command": ["resnode", "fit", "${argz}"]}, "macro ${argz} is not one `resnode sweep` expands "
                                                                "(did you mean 'args'?)"),
    ({**grid(**LR), "command": ["resnode", "fit", "${args_json_file}"]}, "${args_json_file} is not one"),
    (grid(lr={"min": 0.01, "max": 0.1}), "parameter 'lr': `min` draws values at random, which a grid does not"),
    (grid(lr={"distribution": "log_uniform_values"}), "run it with `wandb sweep FILE`, then `wandb agent ID`"),
    (grid(lr={"values": []}), "parameter 'lr': `values` must be a non-empty list"),
    ({**grid(**LR), "method": "random"}, "`method: random` chooses each run at random on W&B's server: run it with "
                                         "`wandb sweep FILE`, then `wandb agent ID`"),
    ({**grid(**LR), "method": "bayes"}, "`method: bayes` chooses each run from the results of the earlier ones"),
    ({**grid(**LR), "command": ["bash", "-c", "touch pwned", "${args}"]}, "the command [bash, -c, touch pwned, "
                                                                           "${args}] does not run resnode"),
    ({**grid(**LR), "command": ["python", "evil.py", "${args}"]}, "the command [python, evil.py, ${args}] does not "
                                                                  "run resnode"),
    ({**grid(**LR), "command": ["${env}", "${interpreter}", "${program}", "${args}"], "program": "evil.py"},
     "does not run resnode"),
    ({**grid(**LR), "program": "resnode", "command": None}, "W&B's default command runs `python <program>`"),
    ({**grid(**LR), "command": ["resnode", "sweep", "other.yaml"]}, "the command runs `resnode sweep`; a sweep's "
                                                                    "runs are `resnode fit | validate | test"),
]  # fmt: skip


@pytest.mark.parametrize("sweep, message", REFUSED)
def test_a_sweep_file_resnode_sweep_does_not_run_is_refused_before_anything_runs(capsys, sweep, message):
    sweep = {key: value for key, value in sweep.items() if value is not None}
    with pytest.raises(SweepFileError) as error:
        check_sweep(sweep)
    assert message in str(error.value)
    path = sweep_file(Path.cwd(), "refused", **sweep)
    assert run_sweep(str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.splitlines()[0]  # one line
    assert not Path("runs").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("dry", [["--dry_run"], []])
def test_a_parameter_resnode_does_not_know_is_refused_by_name_before_anything_runs(capsys, in_empty_folder, dry):
    parameters = {"model.optimizer.init_args.lrr": {"values": [0.1]}}
    path = sweep_file(in_empty_folder, "typo", method="grid", parameters=parameters,
                      command=["resnode", "fit", "--config", "quickstart.yaml", "${args}"])  # fmt: skip
    assert run_sweep(*dry, str(path)) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith(f"error: {path}: resnode refuses run 1 of 1 (model.optimizer.init_args.lrr=0.1): ")
    assert line.endswith(
        "parameter 'model.optimizer.init_args.lrr' is no option of resnode (did you mean 'model.optimizer.lr'?)"
    )
    assert not Path("runs").exists()


def test_a_value_resnode_refuses_is_reported_with_its_run(capsys, in_empty_folder):
    path = sweep_file(in_empty_folder, "value", method="grid", parameters={"trainer.max_epochs": {"values": [1, "x"]}},
                      command=["resnode", "fit", "--config", "quickstart.yaml", "${args}"])  # fmt: skip
    assert run_sweep("--dry_run", str(path)) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert "resnode refuses run 2 of 2 (trainer.max_epochs=x): " in line and "max_epochs" in line.split("): ", 1)[1]


# -- runs as processes: a stub stands in for resnode ------------------------------------------------------
STUB = r'''
"""Stands in for `resnode fit --x=BEHAVIOUR [--ckpt_path FOLDER]` in a sweep: logs its arguments and W&B
group, makes its run folder (or continues FOLDER) with a last.ckpt, then behaves as --x says."""
import os, signal, sys, time
from pathlib import Path

arguments = sys.argv[1:]
log = lambda line: open("log", "a").write(line + "\n")
log(" ".join(arguments) + " " + os.environ["WANDB_RUN_GROUP"])
resumed = "--ckpt_path" in arguments
folder = Path(arguments[arguments.index("--ckpt_path") + 1]) if resumed else None
version = 0
while folder is None:
    folder = None if Path(f"runs/stub/version_{version}").exists() else Path(f"runs/stub/version_{version}")
    version += 1
(folder / "checkpoints").mkdir(parents=True, exist_ok=True)
(folder / "checkpoints" / "last.ckpt").write_text("")
behaviour = next(a for a in arguments if a.startswith("--x=")).removeprefix("--x=")
if behaviour == "crowded":  # another sweep's run makes its folder in the same runs/ at the same time
    Path("runs/another/version_0").mkdir(parents=True)
if report := os.environ.get("RESNODE_RUN_FOLDER_REPORT"):  # as resnode reports it (cli/runs.py, announce)
    Path(report).write_text(str(folder))

def stop(signum, frame):
    log(f"{behaviour} got {signal.Signals(signum).name}")
    if behaviour == "stubborn":  # ignores it, and the sweep is signalled a second time
        os.kill(os.getppid(), signal.SIGTERM)
    else:
        sys.exit(128 + signum)

signal.signal(signal.SIGTERM, stop)
if behaviour == "fail":
    sys.exit(1)
if behaviour == "stop" and not resumed:  # as a run that a scheduler stopped
    sys.exit(143)
if behaviour in ("stop-the-sweep", "stubborn") and not resumed:  # as a scheduler stopping the sweep's job
    os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(20)
    sys.exit(99)
if behaviour == "wait":
    time.sleep(20)
'''


@pytest.fixture
def stub_resnode(in_empty_folder, monkeypatch) -> Path:
    """Runs start the stub instead of resnode; their command lines are not parsed (tested above)."""
    stub = in_empty_folder / "stub.py"
    stub.write_text(STUB)
    monkeypatch.setattr(sweeps, "RESNODE", [sys.executable, str(stub)])
    monkeypatch.setattr(sweeps, "check_command_lines", lambda *_: None)
    return in_empty_folder


def stub_sweep(folder: Path, *behaviours: str) -> Path:
    return sweep_file(folder, "tiny", name="tiny", **grid(x={"values": list(behaviours)}))


FOLDERS = [f"runs/stub/version_{k}" for k in range(4)]


def logged(folder: Path) -> list[str]:
    return (folder / "log").read_text().splitlines()


def test_failed_and_stopped_runs_are_not_finished_the_sweep_goes_on_and_a_restart_continues_them(
    capsys, stub_resnode
):
    path = stub_sweep(stub_resnode, "finish", "stop", "fail")
    assert run_sweep(str(path)) == 1
    out = capsys.readouterr().out
    assert "[sweep tiny: run 2 of 3] stopped with exit status 143; the sweep goes on." in out
    assert "[sweep tiny: run 3 of 3] failed with exit status 1; the sweep goes on." in out
    assert "Sweep tiny done: 3 runs here, 0 finished before, 2 not finished\n  stopped: resnode fit --x=stop\n" in out
    assert logged(stub_resnode) == ["fit --x=finish tiny", "fit --x=stop tiny", "fit --x=fail tiny"]
    assert state(stub_resnode, "tiny") == {
        "resnode fit --x=finish": {"status": "finished", "exit_code": 0, "run_folder": "runs/stub/version_0"},
        "resnode fit --x=stop": {"status": "stopped", "exit_code": 143, "run_folder": "runs/stub/version_1"},
        "resnode fit --x=fail": {"status": "failed", "exit_code": 1, "run_folder": "runs/stub/version_2"},
    }

    assert run_sweep(str(path)) == 1  # the failed run fails again
    out = capsys.readouterr().out
    assert "[sweep tiny: run 1 of 3] finished before (runs/stub/version_0): resnode fit --x=finish" in out
    assert "[sweep tiny: run 2 of 3] (stopped before: continues in runs/stub/version_1) resnode fit --x=stop" in out
    assert "[sweep tiny: run 3 of 3] (failed before: runs again) resnode fit --x=fail" in out
    assert logged(stub_resnode)[3:] == ["fit --x=stop --ckpt_path runs/stub/version_1 tiny", "fit --x=fail tiny"]
    entries = state(stub_resnode, "tiny")
    assert entries["resnode fit --x=stop"] == {"status": "finished", "exit_code": 0, "run_folder": FOLDERS[1]}
    assert entries["resnode fit --x=fail"]["run_folder"] == "runs/stub/version_3"  # a new run, not a continued one


def test_sigterm_to_the_sweep_stops_its_run_which_is_recorded_as_stopped_and_continued_on_restart(
    capsys, stub_resnode
):
    path = stub_sweep(stub_resnode, "finish", "stop-the-sweep", "finish-too")
    assert run_sweep(str(path)) == 143
    assert logged(stub_resnode) == ["fit --x=finish tiny", "fit --x=stop-the-sweep tiny", "stop-the-sweep got SIGTERM"]
    assert "Sweep tiny stopped by SIGTERM: 2 runs here" in capsys.readouterr().out  # the third never started
    entry = state(stub_resnode, "tiny")["resnode fit --x=stop-the-sweep"]
    assert entry == {"status": "stopped", "exit_code": 143, "run_folder": "runs/stub/version_1"}

    assert run_sweep(str(path)) == 0
    assert logged(stub_resnode)[3:] == ["fit --x=stop-the-sweep --ckpt_path runs/stub/version_1 tiny",
                                        "fit --x=finish-too tiny"]  # fmt: skip
    assert [entry["status"] for entry in state(stub_resnode, "tiny").values()] == ["finished"] * 3


def test_a_run_folder_is_the_one_the_run_reports_not_whichever_appeared_in_runs_meanwhile(stub_resnode):
    path = stub_sweep(stub_resnode, "crowded")
    assert run_sweep(str(path)) == 0
    assert Path("runs/another/version_0").is_dir()
    assert state(stub_resnode, "tiny")["resnode fit --x=crowded"]["run_folder"] == "runs/stub/version_0"


def test_a_run_whose_sweep_cannot_be_told_its_folder_warns_and_goes_on(tmp_path, monkeypatch):
    (tmp_path / "not_a_folder").write_text("")  # where the report should go, nothing can be written
    monkeypatch.setenv("RESNODE_RUN_FOLDER_REPORT", str(tmp_path / "not_a_folder" / "run_folder"))
    with pytest.warns(UserWarning, match="could not report the run folder"):
        assert announce(tmp_path / "runs" / "x" / "version_0") == tmp_path / "runs" / "x" / "version_0"


def test_a_run_that_ignores_sigterm_is_killed_at_the_second_signal(stub_resnode):
    path = stub_sweep(stub_resnode, "stubborn")
    assert run_sweep(str(path)) == 143
    assert logged(stub_resnode) == ["fit --x=stubborn tiny", "stubborn got SIGTERM"]
    assert state(stub_resnode, "tiny")["resnode fit --x=stubborn"]["exit_code"] == 128 + signal.SIGKILL


def test_a_second_sweep_of_the_same_name_is_refused_while_the_first_holds_its_lock(capsys, stub_resnode):
    path = stub_sweep(stub_resnode, "finish")
    lock_file = stub_resnode / "runs" / "sweeps" / "tiny.lock"
    lock_file.parent.mkdir(parents=True)
    with open(lock_file, "w") as lock:  # held as a living sweep holds it
        lock.write("4242\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_sweep(str(path)) == 2
    assert capsys.readouterr().err.startswith("error: sweep tiny is running already (pid 4242, runs/sweeps/tiny.lock)")
    assert not (stub_resnode / "log").exists()

    assert run_sweep(str(path)) == 0  # the lock of a sweep that is gone is taken over
    assert lock_file.read_text() == f"{os.getpid()}\n" and logged(stub_resnode) == ["fit --x=finish tiny"]


def test_a_run_left_running_by_a_killed_sweep_is_never_started_beside_itself(capsys, stub_resnode):
    """The sweep was killed with SIGKILL: its run lives on, recorded as running with its pid."""
    path = stub_sweep(stub_resnode, "wait")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    (stub_resnode / "runs" / "stub" / "version_0" / "checkpoints").mkdir(parents=True)
    (stub_resnode / "runs" / "stub" / "version_0" / "checkpoints" / "last.ckpt").write_text("")
    running = {"status": "running", "pid": orphan.pid, "sweep_pid": gone.pid, "run_folder": "runs/stub/version_0"}
    (stub_resnode / "runs" / "sweeps").mkdir(parents=True)
    (stub_resnode / "runs" / "sweeps" / "tiny.json").write_text(json.dumps({"resnode fit --x=wait": running}))
    try:
        assert run_sweep(str(path)) == 2
        err = capsys.readouterr().err
        assert f"still runs as pid {orphan.pid}: resnode fit --x=wait. Wait for it to end, or stop it" in err
        assert not (stub_resnode / "log").exists()
    finally:
        orphan.kill()
        orphan.wait()
    (stub_resnode / "runs" / "sweeps" / "tiny.json").write_text(json.dumps({"resnode fit --x=finish": running}))
    path = stub_sweep(stub_resnode, "finish")
    assert run_sweep(str(path)) == 0  # its process gone, it was stopped with its sweep: continued
    assert logged(stub_resnode) == ["fit --x=finish --ckpt_path runs/stub/version_0 tiny"]


# -- runs as processes: resnode itself --------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_stops_its_run_with_a_checkpoint_which_the_restarted_sweep_continues(
    in_empty_folder, capsys, monkeypatch
):
    """Real runs of resnode, stopped by a signal to their sweep (which runs in this process, as the
    stub sweeps above: the run's callback signals its parent)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPOSITORY), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    path = sweep_file(in_empty_folder, "lr", program="resnode", method="grid",
                      parameters={"model.optimizer.lr": {"values": [0.05, 0.2]}},
                      command=["resnode", "fit", "--config", "quickstart.yaml", "${args}"])  # fmt: skip
    stop = ["--trainer.callbacks+=sweep_helpers.StopTheSweepOnce", "--trainer.callbacks.step", "2"]
    assert run_sweep(str(path), "--", *DEBUG, *stop) == 143
    line, entry = next(iter(state(in_empty_folder, "lr").items()))
    assert entry == {"status": "stopped", "exit_code": 143, "run_folder": "runs/quickstart/version_0"}
    assert (in_empty_folder / "runs/quickstart/version_0/checkpoints/last.ckpt").is_file()
    assert not sweeps.is_alive(int((in_empty_folder / "sweep_stopped").read_text()))  # the run died with it
    assert "Sweep lr stopped by SIGTERM: 1 run here" in capsys.readouterr().out

    assert run_sweep(str(path), "--", *DEBUG, *stop) == 0
    assert f"(stopped before: continues in runs/quickstart/version_0) {line}" in capsys.readouterr().out
    entries = state(in_empty_folder, "lr")
    assert [entry["run_folder"] for entry in entries.values()] == ["runs/quickstart/version_0",
                                                                   "runs/quickstart/version_1"]  # fmt: skip
    assert [entry["status"] for entry in entries.values()] == ["finished", "finished"]
    for line, entry in entries.items():  # each run folder is the one of its command line
        saved = yaml.safe_load((in_empty_folder / entry["run_folder"] / "config.yaml").read_text())
        assert line.endswith(f"--model.optimizer.lr={saved['model']['optimizer']['init_args']['lr']}")


@pytest.mark.parametrize(
    "parameters",
    [{"model.network": {"values": ["somemodule.Net"]}},
     {"model.network.class_path": {"value": "evil.module.thing"}},
     {"trainer.callbacks+": {"values": ["resnode_lightning.training.StepCost", "other.Callback"]}},
     {"model.network": {"value": {"class_path": "evil.Net"}}},
     {"model.network": {"value": "{class_path: evil.Net}"}},
     {"model.optimizer": {"value": "os.system"}},
     {"weights_only": {"value": False}}],
    ids=["a network", "a class_path", "a callback", "nested", "in a string", "a function", "weights_only"],
)  # fmt: skip
def test_a_sweep_file_naming_code_outside_the_trusted_packages_is_refused_before_anything_is_imported(
    tmp_path, parameters, capsys
):
    sweep = {"method": "grid", "parameters": parameters,
             "command": ["resnode", "fit", "--config", "quickstart.yaml", "${args}"]}  # fmt: skip
    with pytest.raises(SweepFileError, match="names code outside resnode_lightning|may not set weights_only"):
        check_sweep(sweep)
    check_sweep({**sweep, "parameters": {"model.network": {"values": ["resnode_lightning.models.SimpleResNet"]}}})
