"""The ``resnode`` command: a LightningCLI over :class:`ImageClassifier` and any data module.

``resnode fit --config cifar_adjoint.yaml`` trains; ``validate``, ``test`` and ``predict`` take
the same configs and ``--ckpt_path``; ``resnode configs`` lists the configs that ship with the
package, which ``--config`` finds by bare name from any folder. Every run writes into its own
folder ``runs/<config name>/version_<k>/``: the resolved config, the checkpoints and the logs.
``resnode sweep`` runs a sweep file's runs; ``resnode gradcheck`` measures the adjoint's gradient
error of a config's network over depths (:mod:`resnode_lightning.diagnostics.gradcheck`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from . import __version__
from .training import ImageClassifier
from .training.checkpoints import AtomicCheckpointIO, newest_last_checkpoint
from .training.config_files import describe_shipped_configs, resolve_config
from .training.numerical_faults import SkipNonFiniteSteps
from .training.random_states import RandomStates
from .training.run_folder import RUNS, check_free_space, new_run_folder
from .training.suggestions import with_suggestion
from .training.tracking import SaveConfigEverywhere, finish_wandb_runs, offline_by_default

DESCRIPTION = (
    "Train ResNets as discretised Neural ODEs (Euler/Heun) with a memory-free adjoint. "
    "`resnode configs` lists the shipped configs; `resnode fit --config NAME.yaml` trains one."
)
DEFAULT_LOGGER = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": RUNS}}
NO_NAME = (None, "", "lightning_logs")  # a logger's name left to its default
CHECKPOINT_DEFAULTS = {
    "monitor": "val/acc1", "mode": "max", "filename": "best", "save_last": True,
    "enable_version_counter": False,  # last.ckpt is shared with the step checkpoint: overwrite, never last-v1.ckpt
}  # fmt: skip


class ResNodeArgumentParser(LightningArgumentParser):
    """The CLI's parser: errors about an unknown key also suggest the closest known one."""

    def error(self, message: str, ex: Exception | None = None):
        parsers = [getattr(ex, "subcommand_parser", None) or self, *subcommand_parsers(self)]
        known = {option.lstrip("-") for parser in parsers for option in parser._option_string_actions}
        return super().error(with_suggestion(message, known), ex)


def subcommand_parsers(parser: LightningArgumentParser) -> list[LightningArgumentParser]:
    subcommands = parser._subcommands_action
    return list(subcommands._name_parser_map.values()) if subcommands is not None else []


class ShippedConfigFile(ActionConfigFile):
    """``--config``: a path, or the name of a config that ships with the package (a path wins)."""

    def __call__(self, parser, cfg, values, option_string=None):
        try:
            path = resolve_config(values)
        except ValueError as error:
            parser.error(str(error))
        super().__call__(parser, cfg, path, option_string)


class ResNodeCLI(LightningCLI):
    """LightningCLI with shipped configs by name, one folder per run and a closing summary."""

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"resnode_lightning=={__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ShippedConfigFile,
            help="A config file, or the name of a shipped one (`resnode configs` lists them); repeat to compose.",
        )  # fmt: skip
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(SkipNonFiniteSteps, "skip_non_finite")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        self.arguments = sys.argv[1:] if args is None else args
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        with reported_as_input_errors(self):
            self.run_folder = self.make_run_folder()

    def make_run_folder(self) -> Path:
        """Give the run its folder, ``runs/<name>/version_<k>``, and point the trainer, the checkpoints
        and every logger there. The config saved with the run keeps the names but not the folder, so
        that running it again makes a new folder."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        loggers = [logger for logger in always_list(config.trainer.logger) if hasattr(logger, "init_args")]
        name = self.name_run(config, loggers)
        self.save_config_kwargs["saved"] = copy.deepcopy(config)
        root = Path(config.trainer.default_root_dir or RUNS)
        if config.get("ckpt_path") == "last":
            config.ckpt_path = resolve_last(root / name, self.subcommand)
        folder = new_run_folder(root, name)
        config.trainer.default_root_dir = str(folder)
        self.point_checkpoints(config, folder)
        point_loggers(loggers, root, folder)
        return folder

    def name_run(self, config, loggers: list) -> str:
        """The run's name: a logger's explicit one (a saved config run again) or the first config
        file's; given to the loggers that have none (W&B's with the overriding flags)."""
        named = [logger.init_args.name for logger in loggers if logger.init_args.get("name") not in NO_NAME]
        name = named[0] if named else Path(config.config[0]).stem if config.get("config") else "resnode"
        for logger in loggers:
            if logger.init_args.get("name") in NO_NAME:
                wandb = logger.class_path.endswith("WandbLogger")
                logger.init_args.name = run_title(name, self.arguments) if wandb else name
        return name

    def point_checkpoints(self, config, folder: Path) -> None:
        """Checkpoints into ``folder/checkpoints``. One ModelCheckpoint cannot save best.ckpt after
        each validation and last.ckpt every n steps (its triggers are exclusive, and a step trigger
        would save "best" weights that were never validated): ``checkpoint.every_n_train_steps``
        goes to a second one, for last.ckpt."""
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(folder / "checkpoints")
        every_n_train_steps, config.checkpoint.every_n_train_steps = config.checkpoint.every_n_train_steps, None
        self.trainer_defaults = {
            **self.trainer_defaults,
            "callbacks": [RandomStates(), *step_checkpoint(config.checkpoint.dirpath, every_n_train_steps)],
        }

    def instantiate_classes(self) -> None:
        """Build the model, the data and the trainer; a config that cannot be built (a depth of 0,
        a missing ``init_from``...) is reported in one line, before any training work."""
        with reported_as_input_errors(self):
            super().instantiate_classes()
            if self.subcommand == "fit":
                self.check_before_fit()

    def check_before_fit(self) -> None:
        """What can be checked before ``fit`` starts: room for the checkpoints, the ``init_from``
        weights (loaded now, so that a missing file or a mismatch stops the run before any data work)
        and where the data is."""
        config = self.config[self.subcommand]
        network_bytes = sum(t.numel() * t.element_size() for t in self.model.network.state_dict().values())
        # best.ckpt and last.ckpt, each with the weights and up to two optimizer buffers per weight
        check_free_space(Path(config.trainer.default_root_dir), needed_bytes=2 * 3 * network_bytes)
        if config.get("ckpt_path") is None:
            self.model.initialise_from_checkpoint()
        if callable(check_data := getattr(self.datamodule, "check_data", None)):
            check_data()

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The trainer, writing its checkpoints atomically (:class:`AtomicCheckpointIO`) unless a
        plugin chose another writer."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        """Say where the run's checkpoints, config and logs are (rank 0; every rank takes part in
        finding the run folder, which is a collective call under DDP)."""
        trainer = self.trainer
        run_folder = Path(trainer.log_dir)
        checkpoint = trainer.checkpoint_callback
        if not trainer.is_global_zero or checkpoint is None:
            return
        kept_last = [callback.last_model_path for callback in trainer.checkpoint_callbacks if callback.last_model_path]
        best, last = shown(checkpoint.best_model_path), shown(kept_last[-1] if kept_last else "")
        finish_wandb_runs(trainer, {"best_checkpoint": best, "last_checkpoint": last})
        validated = best and checkpoint.best_model_score is not None  # not after resuming a finished run
        score = f" ({checkpoint.monitor} {checkpoint.best_model_score:.4f})" if validated else ""
        checkpoints = [f"{best or '(no best: nothing validated)'}{score}", *([last] if last else [])]
        print(
            f"\nDone. Checkpoints: {', '.join(checkpoints)}; config: {run_folder / 'config.yaml'}; logs: {run_folder}"
        )


@contextlib.contextmanager
def reported_as_input_errors(cli: ResNodeCLI) -> Iterator[None]:
    """Report an error raised while building the run from its config as ``error: <message>`` and
    exit with status 2, as for a parse error (``RESNODE_DEBUG=1`` shows the traceback instead).
    The run's folder is removed again if nothing was written into it."""
    try:
        yield
    except (ValueError, TypeError, OSError) as error:
        folder = getattr(cli, "run_folder", None)
        if folder is not None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        if os.environ.get("RESNODE_DEBUG"):
            raise
        sys.stderr.write(f"error: {error}\n(RESNODE_DEBUG=1 shows where it was raised.)\n")
        raise SystemExit(2) from error


def resolve_last(runs: Path, subcommand: str | None) -> str | None:
    """What ``--ckpt_path last`` names: the newest ``last.ckpt`` of the earlier runs in ``runs``
    (``runs/<config name>``). None for a ``fit`` with nothing to resume (it starts afresh, with a
    warning, as Lightning does: one command serves every start of a requeued job)."""
    found = newest_last_checkpoint(runs)
    if found is not None:
        return str(found)
    message = f"--ckpt_path last: no earlier run in {str(runs)!r} has a checkpoints/last.ckpt"
    if subcommand != "fit":
        raise FileNotFoundError(f"{message}. Give the checkpoint's path, or train the config first.")
    rank_zero_warn(f"{message}; training starts from scratch.")
    return None


def step_checkpoint(dirpath: str, every_n_train_steps: int | None) -> list[ModelCheckpoint]:
    """A checkpoint callback that refreshes ``dirpath/last.ckpt`` every n optimizer steps (none for 0 or None)."""
    if not every_n_train_steps:
        return []
    return [
        ModelCheckpoint(
            dirpath, save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps, enable_version_counter=False
        )
    ]


def point_loggers(loggers: list, root: Path, folder: Path) -> None:
    """Every logger writes into the run folder; W&B offline by itself where there is no account."""
    for logger in loggers:
        init_args = logger.init_args
        if logger.class_path.endswith("WandbLogger"):
            init_args.save_dir = str(folder)
            if not init_args.offline and (offline := offline_by_default()) is not None:
                init_args.offline = offline
        elif {"save_dir", "version"} <= set(init_args.keys()):  # CSV, TensorBoard
            init_args.save_dir, init_args.version = str(root), folder.name


def always_list(value) -> list:
    return value if isinstance(value, list) else [value]


def shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (as the user typed it)."""
    if not path:
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_title(name: str, arguments: list[str]) -> str:
    """The run's name for trackers: the config's name and the flags that override it
    (``cifar_adjoint model.network.depth=32``)."""
    overrides, waiting = [], None
    for argument in map(str, arguments):
        if argument.startswith("--"):
            key, _, value = argument[2:].partition("=")
            waiting = None if value or key in ("config", "print_config") else key
            if value and key != "config":
                overrides.append(f"{key}={value}")
        elif waiting is not None:
            overrides.append(f"{waiting}={argument}")
            waiting = None
    return " ".join([name, *overrides])


def main(args: ArgsType = None) -> ResNodeCLI | None:
    """Run the ``resnode`` command line (``args`` as on the command line, or from ``sys.argv``);
    returns the CLI, whose ``trainer``, ``model`` and ``datamodule`` a Python caller may inspect."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["configs"]:
        print(describe_shipped_configs())
        return None
    if argv[:1] == ["sweep"]:
        from .training.sweeps import sweep_command

        sweep_command(argv[1:])
        return None
    if argv[:1] == ["gradcheck"]:
        from .diagnostics.gradcheck import gradcheck_command

        gradcheck_command(argv[1:])
        return None
    return resnode_cli(args)


def command() -> None:
    """The ``resnode`` console script: :func:`main` on ``sys.argv`` (a console script exits with
    the value its function returns, so this one returns nothing: status 0 when the run ends).

    A DDP run's process group is shut down before the interpreter exits: left to exit, gloo's
    threads can abort the process after a successful run ("terminate called without an active
    exception", exit status -6)."""
    main()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def resnode_cli(args: ArgsType, cli_class: type[ResNodeCLI] = ResNodeCLI, **options) -> ResNodeCLI:
    """The ``resnode`` LightningCLI over ``args`` (a subclass of :class:`ResNodeCLI` may build less,
    as ``resnode gradcheck`` does; ``options`` go to LightningCLI, e.g. ``run=False``)."""
    return cli_class(
        ImageClassifier,
        LightningDataModule,
        subclass_mode_data=True,
        parser_class=ResNodeArgumentParser,
        save_config_callback=SaveConfigEverywhere,
        trainer_defaults={"logger": DEFAULT_LOGGER},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_kwargs={"version": __version__, "prog": "resnode", "description": DESCRIPTION},
        args=args,
        **options,
    )
