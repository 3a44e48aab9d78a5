"""How ``resnode`` reads its command line: jsonargparse's parser with one-line errors, shipped
configs by name, typed function signatures as subcommands, and Lightning's Trainer read so that
``1`` means one batch."""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser

from .config_files import resolve_config
from .suggestions import with_suggestion


def int_before_float(annotation: Any) -> Any:
    """``Union[float, int, None]`` as ``Union[int, float, None]``: jsonargparse takes the first type
    that parses, and Lightning reads ``1.0`` as 100 % of the batches where ``1`` means one batch."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and int in arguments and float in arguments:
        return typing.Union[tuple([int, *(a for a in arguments if a is not int)])]  # noqa: UP007
    return annotation


def with_int_before_float(cls: type) -> type:
    """A subclass of ``cls`` whose ``__init__`` signature lists ``int`` before ``float`` in every
    int-or-float option (:func:`int_before_float`); the class is otherwise ``cls`` itself."""
    signature = inspect.signature(cls.__init__)
    parameters = [p.replace(annotation=int_before_float(p.annotation)) for p in signature.parameters.values()]

    def __init__(self, *args, **kwargs):  # noqa: N807
        cls.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature.replace(parameters=parameters)
    __init__.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not p.empty}
    __init__.__doc__ = cls.__init__.__doc__
    return type(cls.__name__, (cls,), {"__init__": __init__, "__doc__": cls.__doc__, "__module__": cls.__module__})


ResNodeTrainer = with_int_before_float(Trainer)
"""Lightning's Trainer, parsed with ``limit_val_batches: 1`` meaning one batch, as Lightning documents."""


class ResNodeArgumentParser(LightningArgumentParser):
    """The CLI's parser: an error is one line (with the closest known key when one is misspelt),
    not the usage; ``resnode <subcommand> --help`` shows every option."""

    def add_subcommands(self, *args, **kwargs):
        """As jsonargparse's; keeps the action, so that our subcommands join Lightning's."""
        self.subcommands_action = super().add_subcommands(*args, **kwargs)
        return self.subcommands_action

    def error(self, message: str, ex: Exception | None = None) -> typing.NoReturn:
        parser = getattr(ex, "subcommand_parser", None) or self
        if not self.exit_on_error:
            super().error(message, ex)
        message = with_suggestion(message, known_options(parser))
        prog = parser.prog.replace(" [options]", "")
        if "unrecognized arguments: -- " in message and prog == "resnode sweep":
            message += " (resnode sweep's own options go before FILE: resnode sweep --dry_run FILE -- WORDS)"
        help_line = "" if "--help" in message else f"\n({prog} --help lists every option.)"
        sys.stderr.write(f"error: {message}{help_line}\n")
        raise SystemExit(2)


def known_options(parser: ArgumentParser) -> list[str]:
    """The option names ``parser --help`` lists (``model.optimizer``, ``trainer.max_epochs`` ...)."""
    return sorted(set(re.findall(r"--([A-Za-z_][\w.]*)", parser.format_help())))


class ShippedConfigFile(ActionConfigFile):
    """``--config``: a path, or the name of a config that ships with the package (a path wins)."""

    def __call__(self, parser, cfg, values, option_string=None):
        try:
            path = resolve_config(values)
        except ValueError as error:
            parser.error(str(error))
        super().__call__(parser, cfg, path, option_string)


def summary(documented: object) -> str:
    """The first paragraph of a docstring (a command's description in its --help)."""
    return inspect.getdoc(documented).split("\n\n")[0].replace("\n", " ")


def boolean_flags(function: Callable) -> list[str]:
    """The parameters of ``function`` annotated ``bool``."""
    return [name for name, p in inspect.signature(function).parameters.items() if p.annotation in (bool, "bool")]


def add_signature(parser: ArgumentParser, function: Callable, skip: set[str] = frozenset()) -> None:
    """``function``'s typed signature as options of ``parser`` (its docstring's ``Args:`` as the
    help); a ``bool`` is a flag (``--dry_run``, ``--no_dry_run``)."""
    flags = set(boolean_flags(function)) - skip
    parser.add_function_arguments(function, as_positional=True, skip=skip | flags, fail_untyped=True)
    for name in flags:
        default = inspect.signature(function).parameters[name].default
        parser.add_argument(f"--{name}", action=ActionYesNo, default=default is True, help=f"(default {default})")
