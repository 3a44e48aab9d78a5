"""The YAML configs that ship with the package, found by name from any folder.

They live in ``resnode_lightning/configs/`` (also reachable as ``configs/`` in a source tree), so a
non-editable install has them too. Each starts with a comment whose first line says what it is.
"""

from __future__ import annotations

from pathlib import Path

from .runs import saved_config
from .suggestions import closest

SHIPPED = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """Every shipped config by the name ``--config`` accepts (``cifar_adjoint.yaml``,
    ``presets/debug.yaml``, ``models/simple_resnet.yaml``)."""
    return {path.relative_to(SHIPPED).as_posix(): path for path in sorted(SHIPPED.rglob("*.yaml"))}


def resolve_config(value: str) -> str:
    """What ``--config value`` reads: the config a run folder saved (``runs/<name>/version_<k>``),
    ``value`` itself if it is a file that exists or an inline YAML/JSON string, else the shipped
    config of that name (``.yaml`` may be left out).

    Raises:
        ValueError: ``value`` is none of these, with the closest shipped name.
    """
    if (saved := saved_config(value)) is not None:
        return str(saved)
    if Path(value).exists() or any(mark in value for mark in ("\n", "{", ": ")):
        return value
    configs = shipped_configs()
    for name in (value, f"{value}.yaml", value.removeprefix("configs/")):
        if name in configs:
            return str(configs[name])
    close = closest(value.removeprefix("configs/"), configs)
    hint = f"Did you mean {close!r}? " if close else ""
    raise ValueError(
        f"--config {value!r}: no such file, and no shipped config has that name. {hint}Give the path of a "
        "config file, or the name of a shipped one (`resnode configs` lists them)."
    )


def description(path: Path) -> str:
    """The first sentence of the config's header comment."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    text = " ".join(header)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


GROUPS = {
    "": "Experiments (resnode fit --config NAME):",
    "presets": "Presets (compose after an experiment: --config NAME --config presets/PRESET):",
    "models": "Networks alone (a model.network section, e.g. --model.network PATH):",
    "sweeps": "W&B sweeps (resnode sweep NAME runs one here; wandb sweep FILE on W&B):",
}


def describe_shipped_configs() -> str:
    """One line per shipped config, by group: its name and what it is."""
    configs = shipped_configs()
    width = max(map(len, configs))
    lines = []
    for folder, title in GROUPS.items():
        group = {n: p for n, p in configs.items() if p.parent.relative_to(SHIPPED).as_posix() == (folder or ".")}
        if group:
            lines += ["" if lines else None, title, *(f"  {n:<{width}}  {description(p)}" for n, p in group.items())]
    return "\n".join(line for line in lines if line is not None)
