"""What a run given ``--ckpt_path`` may do: continue its run with the same model (a changed model
option is refused, never dropped), only if there is something left to train, with a network
whose tensors fit the checkpoint's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import CONFIG

NOT_COMPARED_ON_RESUME = ("init_from",)
"""Model options a resume does not use (the weights come from the checkpoint), so they may differ."""


def check_same_model(subcommand: str, model: dict[str, Any], hyperparameters: dict[str, Any], path: Path) -> None:
    """Every model option the checkpoint's hyper-parameters hold has the value the config files and
    flags give it (LightningCLI would replace the config's by the checkpoint's without a word).

    Raises:
        ValueError: the differing keys with both values, and what to do instead.
    """
    given = flatten(model)
    saved = flatten(hyperparameters)
    differing = [
        key for key, value in saved.items()
        if key in given and given[key] != value and key.split(".")[0] not in NOT_COMPARED_ON_RESUME
    ]  # fmt: skip
    if differing:
        listed = "; ".join(f"model.{k}: {given[k]!r} here, {saved[k]!r} in the checkpoint" for k in differing)
        action = "continues a run" if subcommand == "fit" else "was trained"
        raise ValueError(
            f"--ckpt_path {str(path)!r} {action} with another model than this config's: {listed}. Give the "
            f"config it was trained with (its run folder's {CONFIG})"
            + (f"; to train with these values, start a new run from its weights: --model.init_from {path} "
               "(without --ckpt_path)." if subcommand == "fit" else ".")
        )  # fmt: skip


def check_network_fits(expected: dict[str, tuple], found: dict[str, tuple], path: str) -> None:
    """The checkpoint's network tensors (``found``: name → shape) are those the config builds (``expected``).

    Raises:
        ValueError: what is missing, left over or of another shape, and what to do instead.
    """
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    reshaped = [key for key in expected.keys() & found.keys() if expected[key] != found[key]]
    if missing or extra or reshaped:
        detail = (
            f"{len(missing)} tensors missing (e.g. {missing[:2]})" if missing else
            f"{len(extra)} tensors left over (e.g. {extra[:2]})" if extra else
            f"{reshaped[0]} has shape {found[reshaped[0]]} there, {expected[reshaped[0]]} here"
        )  # fmt: skip
        raise ValueError(
            f"--ckpt_path {path!r} holds another network than this config builds ({detail}). Give the config "
            f"the checkpoint was trained with (its run folder's {CONFIG}); to load weights into a network of "
            "another depth or tying, use --model.init_from."
        )


def check_room_to_train(trainer: Any, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run that already reached the trainer's ``max_epochs`` (Lightning stops
    with a traceback deep in its loops)."""
    epoch = int(checkpoint.get("epoch", 0))
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and max_epochs != -1 and epoch > max_epochs:
        raise ValueError(
            f"--ckpt_path {str(path)!r} was saved in epoch {epoch} (counted from 0), past trainer.max_epochs="
            f"{max_epochs}: there is nothing left to train. Give --trainer.max_epochs {epoch + 1} or more to train on."
        )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: leaf} (lists and tuples are leaves, as lists)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    key = prefix.rstrip(".")
    return {key: list(value) if isinstance(value, tuple) else value}
