"""W&B sweep files: checked, expanded into their runs, and made ``resnode`` command lines as W&B's agent would.

A sweep file is standard W&B sweep YAML (``program``, ``method``, ``metric``, ``parameters``,
``command``), so ``wandb sweep FILE`` takes the same file. Here only ``method: grid`` runs: the
cartesian product of every parameter's ``values`` (or ``value``), in the file's order. ``random``
and ``bayes`` draw each run on W&B's server (``bayes`` from the results of the earlier runs):
``wandb sweep FILE``, then ``wandb agent ID``.

A sweep file is data. Its command must run ``resnode`` (:func:`resnode_arguments` says how it may
be spelt) with one of Lightning's subcommands; the words after it are the arguments of a process
started here, never given to a shell.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .suggestions import did_you_mean
from .trust import TRUSTED_PACKAGES, is_trusted

TOP_LEVEL_KEYS = (
    "program", "method", "metric", "parameters", "command", "name", "description", "project", "entity",
    "early_terminate", "run_cap",
)  # fmt: skip
"""What a sweep file may hold (``metric`` and ``early_terminate`` matter to W&B's server only)."""
PARAMETER_KEYS = ("values", "value")
DRAWING_KEYS = ("distribution", "min", "max", "q", "probabilities", "mu", "sigma")
"""A parameter's keys for drawing values at random (``method: random`` or ``bayes``, on W&B's server)."""
METHODS = ("grid",)
ON_WANDB = "run it with `wandb sweep FILE`, then `wandb agent ID`"
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
"""W&B's command when the file has none."""
PARAMETER_MACROS = ("args", "args_no_hyphens", "args_no_boolean_flags", "args_json")
"""The macros a run's parameters replace (W&B's, less ``args_json_file``: resnode takes flags)."""
MACROS = ("env", "interpreter", "program", *PARAMETER_MACROS)
ENVIRONMENT_VARIABLE = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
"""``${envvar:NAME}``, anywhere in a word: the variable's value (W&B's pattern: capitals, digits, _)."""
LAUNCHERS = (["resnode"], ["python", "-m", "resnode_lightning"], ["python3", "-m", "resnode_lightning"])
"""How a command may start resnode (after ``${env}``); the runs start this interpreter's resnode."""
SUBCOMMANDS = ("fit", "validate", "test", "predict")
CLASS_PATH = re.compile(r"(?:[A-Za-z_]\w*\.)+[A-Z]\w*")
DOTTED_NAME = re.compile(r"(?<![\w./])(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*(?![\w/])")
"""A dotted import path of a class (its last part capitalised, as classes are named)."""


class SweepFileError(ValueError):
    """A sweep file that ``resnode sweep`` does not run, with what to change."""


def read_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep file at ``path``, checked (:func:`check_sweep`).

    Raises:
        SweepFileError: it is not YAML, not a mapping, or :func:`check_sweep` refuses it.
    """
    try:
        sweep = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise SweepFileError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(sweep, dict):
        raise SweepFileError(f"{path}: a sweep file is a YAML mapping with `method`, `parameters` and `command`.")
    check_sweep(sweep, where=str(path))
    return sweep


def check_sweep(sweep: dict[str, Any], where: str = "the sweep file") -> None:
    """Refuse, before anything runs, a sweep whose keys, method, parameters or command ``resnode
    sweep`` does not run.

    Raises:
        SweepFileError: naming the key, parameter or command at fault and what is accepted instead.
    """
    check_keys(sweep, TOP_LEVEL_KEYS, where)
    method = sweep.get("method")
    if method in ("random", "bayes"):
        chooses = "at random" if method == "random" else "from the results of the earlier ones"
        raise SweepFileError(
            f"{where}: `method: {method}` chooses each run {chooses} on W&B's server: {ON_WANDB}. "
            "`resnode sweep` runs `method: grid` (every combination of the parameters' values)."
        )
    if method not in METHODS:
        raise SweepFileError(f"{where}: `method: {method}` is not a W&B sweep method; `resnode sweep` runs grid.")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepFileError(
            f"{where}: `parameters` must map each swept flag to its values, e.g. "
            "`model.optimizer.lr: {values: [0.1]}`."
        )
    for name, spec in parameters.items():
        check_parameter(spec, f"{where}, parameter {name!r}")
    check_command(sweep, where)
    check_no_foreign_code(sweep, where)
    run_cap = sweep.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise SweepFileError(f"{where}: `run_cap: {run_cap}` must be a positive number of runs.")


def check_keys(mapping: dict, accepted: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in accepted:
            raise SweepFileError(
                f"{where}: unknown key {key!r}{did_you_mean(key, accepted)}. "
                f"The accepted keys are {', '.join(accepted)}."
            )


def check_parameter(spec: Any, where: str) -> None:
    """A grid's parameter: ``{values: [a, b]}`` or ``{value: a}``."""
    if not isinstance(spec, dict):
        raise SweepFileError(f"{where}: give a mapping such as {{values: [1, 2]}} or {{value: 1}}, not {spec!r}.")
    drawing = [key for key in spec if key in DRAWING_KEYS]
    if drawing:
        raise SweepFileError(
            f"{where}: `{drawing[0]}` draws values at random, which a grid does not: give `values` or `value` "
            f"(a random or bayes sweep draws on W&B's server: {ON_WANDB})."
        )
    check_keys(spec, PARAMETER_KEYS, where)
    if len(spec) != 1:
        raise SweepFileError(f"{where}: give `values` (a list) or `value` (one value), one of the two.")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        raise SweepFileError(f"{where}: `values` must be a non-empty list, e.g. [0.05, 0.1].")


def check_no_foreign_code(sweep: dict[str, Any], where: str) -> None:
    """A sweep file names no code outside the trusted packages (:mod:`.trust`), and cannot turn on
    full unpickling (``weights_only``): jsonargparse imports the module of a class path when the run,
    or the check of its command line, parses it. Every dotted name in its values and command (nested
    values included) is taken for code when it names a class (last part capitalised), sits under a
    ``class_path`` key, or starts with a module that Python would find (found without importing it).
    The words after ``--`` are the user's own and not checked here.

    Raises:
        SweepFileError: naming the value and where it is.
    """
    named = [(f"parameter {name!r}", name, value) for name, spec in sweep["parameters"].items()
             for value in spec.get("values", [spec.get("value")])]  # fmt: skip
    named += [("the command", "", word) for word in sweep.get("command", DEFAULT_COMMAND)]
    for place, key, value in named:
        if "weights_only" in f"{key} {value}":
            raise SweepFileError(
                f"{where}, {place}: a sweep file may not set weights_only (it would unpickle a checkpoint in full, "
                "running any code it carries); give --weights_only after -- for a file you trust."
            )
        for text in strings_in(value):
            for found in DOTTED_NAME.finditer(text):
                name = found.group(0)
                if not is_trusted(name) and (CLASS_PATH.fullmatch(name) or "class_path" in key or is_module(name)):
                    raise SweepFileError(
                        f"{where}, {place}: {name!r} names code outside {', '.join(TRUSTED_PACKAGES)}; a sweep "
                        "file is data and never imports code. Name the class in a --config file of yours and give "
                        "that file after -- (resnode sweep FILE -- --config mine.yaml)."
                    )


def strings_in(value: Any) -> list[str]:
    """Every string in a value, its keys and nested values included."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [str(key), *strings_in(item)]]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in strings_in(item)]
    return [str(value)]


def is_module(dotted: str) -> bool:
    """Whether Python would find the top-level module of ``dotted`` (looked up, not imported)."""
    try:
        return importlib.util.find_spec(dotted.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def check_command(sweep: dict[str, Any], where: str) -> None:
    """The command is a list of words, its macros are known, and it runs resnode with a Lightning subcommand."""
    command = sweep.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not all(isinstance(word, (str, int, float)) for word in command):
        raise SweepFileError(
            f"{where}: `command` must be a list of words, e.g. [resnode, fit, --config, X.yaml, ${{args}}]."
        )
    for word in map(str, command):
        macro = macro_name(word)
        if macro is not None and macro not in MACROS:
            raise SweepFileError(
                f"{where}: the command's macro {word} is not one `resnode sweep` expands{did_you_mean(macro, MACROS)}; "
                f"it expands {', '.join('${' + m + '}' for m in MACROS)} and ${{envvar:NAME}}."
            )
    arguments = resnode_arguments(sweep)
    if arguments is None:
        raise SweepFileError(
            f"{where}: the command [{', '.join(map(str, command))}] does not run resnode: a sweep file chooses "
            "resnode's options, never a program. Start it with `resnode` (or `${env} ${interpreter} -m "
            "resnode_lightning`), e.g. [resnode, fit, --config, X.yaml, ${args}]; W&B's default command runs "
            "`python <program>`, so a sweep of resnode names its command."
        )
    if arguments[:1] not in [[subcommand] for subcommand in SUBCOMMANDS]:
        raise SweepFileError(
            f"{where}: the command runs `resnode {' '.join(arguments[:1])}`; a sweep's runs are "
            f"`resnode {' | '.join(SUBCOMMANDS)} ...`, the subcommand first."
        )


def macro_name(word: str) -> str | None:
    """``args`` for the word ``${args}``; None for a word that is not a macro."""
    return word[2:-1] if word.startswith("${") and word.endswith("}") and ":" not in word else None


def resnode_arguments(sweep: dict[str, Any]) -> list[str] | None:
    """The words the sweep's command gives resnode, or None when it runs something else.

    The command may start with ``${env}`` (or ``/usr/bin/env``), then ``resnode`` or ``python -m
    resnode_lightning``, where ``${interpreter}`` stands for ``python`` and ``${program}`` for the
    file's ``program`` (``program: resnode`` with ``[${env}, ${program}, ...]``). Whatever the
    spelling, a run starts this interpreter's resnode with the words that follow.
    """
    words = [str(word) for word in sweep.get("command", DEFAULT_COMMAND)]
    spelt = {"${interpreter}": "python", "${program}": str(sweep.get("program", ""))}
    words = [spelt.get(word, word) for word in words]
    if words[:1] in (["${env}"], ["/usr/bin/env"]):
        words = words[1:]
    for launcher in LAUNCHERS:
        if words[: len(launcher)] == launcher:
            return words[len(launcher) :]
    return None


def expand(sweep: dict[str, Any], count: int | None = None) -> list[dict[str, Any]]:
    """The grid's runs, each as ``{parameter: value}``: the product of every parameter's values in
    the file's order; its first ``count`` when given, and at most ``run_cap``."""
    caps = [n for n in (count, sweep.get("run_cap")) if n is not None]
    parameters = sweep["parameters"]
    choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()]
    runs = [dict(zip(parameters, values)) for values in itertools.product(*choices)]
    return runs[: min(caps)] if caps else runs


def parameter_words(run: dict[str, Any]) -> dict[str, list[str]]:
    """The words of each parameter macro for one run, as W&B's agent writes them: ``--name=value``
    with the value as Python prints it (``True``, ``[3, 3]``, ``0.05``)."""
    return {
        "args": [f"--{name}={value}" for name, value in run.items()],
        "args_no_hyphens": [f"{name}={value}" for name, value in run.items()],
        "args_no_boolean_flags": [
            f"--{name}" if value is True else f"--{name}={value}" for name, value in run.items() if value is not False
        ],
        "args_json": [json.dumps(run)],
    }


def command_line(sweep: dict[str, Any], run: dict[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """The run's command line, ``resnode <subcommand> ...`` (the sweep has passed :func:`check_sweep`):
    each parameter macro replaced by its words, ``${envvar:NAME}`` by the variable's value.

    ``extra`` words go just before the first parameter macro (so that a ``--config`` among them
    cannot undo a swept value), or at the end when the command has none.

    Raises:
        SweepFileError: a ``${envvar:NAME}`` whose variable is not set.
    """
    words = parameter_words(run)
    line, pending = ["resnode"], list(extra)
    for word in resnode_arguments(sweep):
        macro = macro_name(word)
        if macro in words:
            line, pending = [*line, *pending, *words[macro]], []
        else:
            line.append(ENVIRONMENT_VARIABLE.sub(environment_value, word))
    return line + pending


def environment_value(match: re.Match) -> str:
    name = match.group(1)
    if name not in os.environ:
        raise SweepFileError(
            f"the sweep's command names ${{envvar:{name}}}, and {name} is not set here: set it, or write the value "
            "into the command."
        )
    return os.environ[name]
