"""W&B sweep files read here: checked, expanded into their runs and turned into command lines as W&B's agent would.

A sweep file is standard W&B sweep YAML (``program``, ``method``, ``metric``, ``parameters``,
``command``), so ``wandb sweep FILE`` takes the same file. Locally, ``method: grid`` is the
cartesian product of every parameter's ``values`` (and ``value``), ``method: random`` draws runs
from ``values``, ``value`` and the distributions ``uniform``, ``log_uniform_values``,
``int_uniform`` and ``q_uniform`` (``min``/``max``/``q`` as W&B defines them), seeded. ``bayes``
learns from the results of earlier runs, which only W&B's server has.
"""

from __future__ import annotations

import difflib
import itertools
import math
import platform
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from wandb.sdk.launch.sweeps.utils import (
    SWEEP_COMMAND_ENV_VAR_REGEX,
    create_sweep_command,
    create_sweep_command_args,
)

TOP_LEVEL_KEYS = (
    "program", "method", "metric", "parameters", "command", "name", "description", "project", "entity",
    "early_terminate", "run_cap",
)  # fmt: skip
"""What a sweep file may hold (``metric`` and ``early_terminate`` matter to W&B's server only)."""
PARAMETER_KEYS = ("value", "values", "distribution", "min", "max", "q", "probabilities")
METHODS = ("grid", "random")
DISTRIBUTIONS = ("constant", "categorical", "uniform", "log_uniform_values", "int_uniform", "q_uniform")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
"""W&B's command when the file has none."""
PARAMETER_MACROS = tuple(key for key in create_sweep_command_args({"args": {}}) if key != "args_dict")
"""``${args}``, ``${args_no_hyphens}``, ...: the sweep's parameters, formatted by W&B's own code."""
MACROS = ("env", "interpreter", "program", *PARAMETER_MACROS)


class SweepFileError(ValueError):
    """A sweep file that the local expansion cannot run, with what to change."""


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
    """Refuse, before anything runs, a sweep whose keys, method, parameters or command the local
    expansion does not know.

    Raises:
        SweepFileError: naming the key or parameter at fault and what is accepted instead.
    """
    check_keys(sweep, TOP_LEVEL_KEYS, where)
    method = sweep.get("method")
    if method == "bayes":
        raise SweepFileError(
            f"{where}: `method: bayes` chooses each run from the results of the earlier ones, which only W&B's "
            "server has. Run it with `wandb sweep FILE` and `wandb agent ID`, or use `method: grid` or "
            "`method: random` here."
        )
    if method not in METHODS:
        raise SweepFileError(f"{where}: `method: {method}` is not one of {', '.join(METHODS)} (or bayes, on W&B).")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepFileError(
            f"{where}: `parameters` must map each swept flag to its values, e.g. `lr: {{values: [0.1]}}`."
        )
    for name, spec in parameters.items():
        check_parameter(name, spec, method, where)
    command = sweep.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not all(isinstance(part, (str, int, float)) for part in command):
        raise SweepFileError(
            f"{where}: `command` must be a list of words, e.g. [resnode, fit, --config, X.yaml, ${{args}}]."
        )
    for part in map(str, command):
        macro = part.startswith("${") and part.endswith("}") and not SWEEP_COMMAND_ENV_VAR_REGEX.fullmatch(part)
        if macro and part[2:-1] not in MACROS:
            raise SweepFileError(
                f"{where}: the command's macro {part} is unknown here{suggestion(part[2:-1], MACROS)}; "
                f"the macros are {', '.join('${' + m + '}' for m in MACROS)}."
            )
    run_cap = sweep.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise SweepFileError(f"{where}: `run_cap: {run_cap}` must be a positive number of runs.")


def check_keys(mapping: dict, accepted: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in accepted:
            raise SweepFileError(
                f"{where}: unknown key {key!r}{suggestion(key, accepted)}. The accepted keys are {', '.join(accepted)}."
            )


def suggestion(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_parameter(name: str, spec: Any, method: str, where: str) -> None:
    where = f"{where}, parameter {name!r}"
    if not isinstance(spec, dict):
        raise SweepFileError(f"{where}: give a mapping such as {{values: [1, 2]}} or {{value: 1}}, not {spec!r}.")
    check_keys(spec, PARAMETER_KEYS, where)
    distribution = distribution_of(spec)
    if distribution not in DISTRIBUTIONS:
        hint = (
            " (log_uniform_values takes the values themselves as min and max)" if distribution == "log_uniform" else ""
        )
        raise SweepFileError(
            f"{where}: `distribution: {distribution}` is not expanded here{hint}; the local expansion knows "
            f"{', '.join(DISTRIBUTIONS)} (W&B's server knows more: `wandb sweep FILE`)."
        )
    if method == "grid" and distribution not in ("constant", "categorical"):
        raise SweepFileError(
            f"{where}: a grid needs `values` or `value`; draw from `{distribution}` with `method: random`."
        )
    if distribution == "constant" and "value" not in spec:
        raise SweepFileError(f"{where}: `distribution: constant` needs `value`.")
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SweepFileError(f"{where}: `values` must be a non-empty list, e.g. [0.05, 0.1].")
        probabilities = spec.get("probabilities", values)
        if not isinstance(probabilities, list) or len(probabilities) != len(values):
            raise SweepFileError(f"{where}: `probabilities` needs one number per value ({len(values)}).")
    if distribution in ("uniform", "log_uniform_values", "int_uniform", "q_uniform"):
        low, high = spec.get("min"), spec.get("max")
        if not all(isinstance(bound, (int, float)) for bound in (low, high)) or not low < high:
            raise SweepFileError(f"{where}: `distribution: {distribution}` needs numbers `min` < `max`.")
        if distribution == "int_uniform" and not all(isinstance(bound, int) for bound in (low, high)):
            raise SweepFileError(f"{where}: `distribution: int_uniform` needs whole numbers as `min` and `max`.")
        if distribution == "log_uniform_values" and low <= 0:
            raise SweepFileError(
                f"{where}: `distribution: log_uniform_values` needs `min` > 0 (the values themselves)."
            )


def distribution_of(spec: dict[str, Any]) -> str:
    """The parameter's distribution, inferred as W&B does when the file does not say."""
    if "distribution" in spec:
        return spec["distribution"]
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    return "int_uniform" if all(isinstance(spec.get(bound), int) for bound in ("min", "max")) else "uniform"


def expand(sweep: dict[str, Any], count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The sweep's runs, each as ``{parameter: value}``: the grid's product in the file's order
    (the first ``count`` of it when given), or ``count`` seeded random draws. ``run_cap`` caps both.

    Raises:
        SweepFileError: a random sweep without ``count`` or ``run_cap``.
    """
    caps = [n for n in (count, sweep.get("run_cap")) if n is not None]
    cap = min(caps) if caps else None
    parameters = sweep["parameters"]
    if sweep["method"] == "grid":
        choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()]
        runs = [dict(zip(parameters, values)) for values in itertools.product(*choices)]
        return runs[:cap]
    if cap is None:
        raise SweepFileError("A random sweep never ends by itself: say how many runs to draw with --count N.")
    rng = random.Random(seed)
    return [{name: draw(spec, rng) for name, spec in parameters.items()} for _ in range(cap)]


def draw(spec: dict[str, Any], rng: random.Random) -> Any:
    """One value of a parameter, as W&B's random search draws it."""
    distribution = distribution_of(spec)
    if distribution == "constant":
        return spec["value"]
    if distribution == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    low, high = spec["min"], spec["max"]
    if distribution == "int_uniform":
        return rng.randint(low, high)  # both ends included
    if distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    value = rng.uniform(low, high)
    if distribution == "q_uniform":
        q = spec.get("q", 1)
        value = round(value / q) * q
        return int(value) if all(isinstance(n, int) for n in (low, high, q)) else value
    return value


def command_line(sweep: dict[str, Any], run: dict[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """The run's command line as W&B's agent builds it: ``${envvar:NAME}`` replaced, a word that is
    a macro replaced by its words (``${args}``: ``--name=value`` per parameter, W&B's formatting of
    the values), ``${interpreter}`` the word ``python``, ``${program}`` the file's program.

    ``extra`` words go just before the parameters (so that a ``--config`` among them cannot undo a
    swept value), or at the end when the command has no parameter macro.
    """
    words = create_sweep_command_args({"args": {name: {"value": value} for name, value in run.items()}})
    words.update(interpreter=["python"], program=[str(sweep.get("program", ""))])
    words["env"] = ["/usr/bin/env"] if platform.system() != "Windows" else []
    line, pending = [], list(extra)
    for part in create_sweep_command([str(part) for part in sweep.get("command", DEFAULT_COMMAND)]):
        macro = part[2:-1] if part.startswith("${") and part.endswith("}") else None
        if macro in PARAMETER_MACROS:
            line, pending = line + pending, []
        line += [part] if macro is None else words[macro]
    return line + pending
