"""What a checkpoint may decide: the trust boundary between a checkpoint's contents and code.

A checkpoint is data. Its tensors are read weights-only (:func:`~resnode_lightning.training.weights.read_checkpoint`);
its hyper-parameters may choose values, and classes from the packages below, never other code.
They are never parsed into the config (jsonargparse would import the module of every
``class_path``): they are compared with it, and a foreign class path is refused outright.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

TRUSTED_PACKAGES = ("resnode_lightning", "torch", "torchvision", "lightning", "torchmetrics")
"""The packages a checkpoint's ``class_path`` may name (a class of this package or of the libraries it is built on)."""
CALLABLE_KEYS = ("class_path", "_class_path", "optimizer", "lr_scheduler")
"""Keys whose string values jsonargparse resolves into code (a class or a callable, by import path)."""
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class UntrustedCheckpointError(ValueError):
    """A checkpoint names code outside :data:`TRUSTED_PACKAGES`."""


def is_trusted(path: str) -> bool:
    """Whether an import path lies in one of :data:`TRUSTED_PACKAGES` (``torch.optim.SGD``: yes)."""
    return any(path == package or path.startswith(f"{package}.") for package in TRUSTED_PACKAGES)


def code_references(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every (dotted key, import path) in a checkpoint's hyper-parameters that jsonargparse would import."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            dotted = f"{where}.{key}" if where else str(key)
            if key in CALLABLE_KEYS and isinstance(item, str):
                yield dotted, item
            else:
                yield from code_references(item, dotted)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from code_references(item, f"{where}[{index}]")


def check_hyperparameters(
    hyperparameters: Mapping[str, Any], checkpoint: str, named_by_user: Iterable[str] = ()
) -> None:
    """Refuse a checkpoint whose hyper-parameters name code outside :data:`TRUSTED_PACKAGES` and
    outside what the user's own config names (``named_by_user``: a researcher's network class,
    given in their config, is theirs to trust).

    Raises:
        UntrustedCheckpointError: naming the checkpoint, the key and the class path; nothing was imported.
    """
    named = set(named_by_user)
    for key, path in code_references(hyperparameters):
        if not is_trusted(path) and path not in named:
            raise UntrustedCheckpointError(
                f"{checkpoint}: its hyper-parameters name {path!r} (at {key}), code outside "
                f"{', '.join(TRUSTED_PACKAGES)}; a checkpoint may choose values, never code, so it is "
                "not loaded. If you trust its author, give the model in a --config file of yours and load "
                "the weights alone with --model.init_from."
            )


def check_local(value: str, option: str) -> None:
    """Refuse a URL where a local checkpoint file is expected.

    Raises:
        ValueError: naming ``option`` and the fix.
    """
    if URL.match(value):
        raise ValueError(
            f"{option} {value!r}: checkpoints are read from local files only (a downloaded checkpoint is "
            "data to check first). Download it, then give the file's path."
        )
