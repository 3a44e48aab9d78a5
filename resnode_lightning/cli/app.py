"""The ``resnode`` command: one jsonargparse parser for every subcommand, over the Lightning layer.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's, over :class:`ImageClassifier`
and any data module; ``configs``, ``sweep`` and ``gradcheck`` are ours, each parsed from the typed
signature of the function that runs it. Every run gets its folder (:mod:`.runs`), every
checkpoint is read as data (:mod:`.trust`), and a scheduler's signal leaves a resumable run
(:mod:`.signals`). docs/architecture.md shows where each concern lives.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from .. import __version__
from ..data.image_datamodule import batch_per_process
from ..training import ImageClassifier
from ..training.checkpoint_io import AtomicCheckpointIO
from ..training.interruption import CheckpointOnSignal
from ..training.logs import QuietWandbLogger, ResumableCSVLogger
from ..training.numerical_faults import SkipNonFiniteSteps
from ..training.progress import ResumedEpochProgress
from ..training.random_states import RandomStates
from ..training.weights import network_state_dict, read_checkpoint
from . import gradcheck as gradcheck_command
from .config_files import describe_shipped_configs
from .parsing import ResNodeArgumentParser, ResNodeTrainer, ShippedConfigFile, add_signature, summary
from .quiet import quiet_known_messages
from .resume import check_network_fits, check_room_to_train, check_same_model, flatten
from .runs import (
    CONFIG,
    RUNS,
    check_free_space,
    continue_run_folder,
    launched_rank,
    new_run_folder,
    resolve_checkpoint,
    run_folder_of,
)
from .signals import SignalRecorder
from .sweeps import sweep as sweep_command
from .tracking import SaveConfigEverywhere, finish_wandb_runs, offline_by_default
from .trust import check_hyperparameters, check_local, code_references

DESCRIPTION = (
    "Train ResNets as discretised Neural ODEs (Euler/Heun) with a memory-free adjoint. "
    "`resnode configs` lists the shipped configs; `resnode fit --config NAME.yaml` trains one."
)
LIGHTNING_CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
SAME_LOGGERS = {LIGHTNING_CSV_LOGGER: ResumableCSVLogger, "lightning.pytorch.loggers.WandbLogger": QuietWandbLogger}
"""Lightning's loggers a config names, and ours that run in their place (subclasses: the same options)."""
DEFAULT_LOGGER = {"class_path": LIGHTNING_CSV_LOGGER, "init_args": {"save_dir": RUNS}}
NO_NAME = (None, "", "lightning_logs")  # a logger's name left to its default
CHECKPOINT_DEFAULTS = {
    "monitor": "val/acc1", "mode": "max", "filename": "best", "save_last": True,
    "enable_version_counter": False,  # last.ckpt is shared with the step checkpoint: overwrite, never last-v1.ckpt
}  # fmt: skip
NOT_IN_TITLE = ("config", "ckpt_path", "weights_only", "seed_everything", "trainer.logger", "trainer.callbacks")
"""Options a tracker's run title leaves out: which files, which checkpoint, the seed, the loggers and callbacks."""
SIGNALS = SignalRecorder()


class ResNodeCLI(LightningCLI):
    """LightningCLI with our subcommands, shipped configs by name, one folder per run, checkpoints
    read as data, resume that says what it does, and a closing summary."""

    OWN_SUBCOMMANDS = ("configs", "sweep", "gradcheck")

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"resnode_lightning=={__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ShippedConfigFile,
            help="A config file, or the name of a shipped one (`resnode configs` lists them); repeat to compose.",
        )  # fmt: skip
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if not add_subcommands:
            return
        subcommands = self.parser.subcommands_action
        configs = ResNodeArgumentParser(prog="resnode configs", description=describe_configs.__doc__)
        subcommands.add_subcommand("configs", configs, help="List the configs that ship with the package.")
        sweep = ResNodeArgumentParser(prog="resnode sweep", description=summary(sweep_command))
        add_signature(sweep, sweep_command, skip={"extra", "parse"})
        sweep.add_argument(
            "extra", nargs="*", default=[], help="words after --, given to every run before the swept flags (optional)"
        )
        subcommands.add_subcommand("sweep", sweep, help="Run a W&B sweep file's runs here, one after another.")
        gradcheck = self.init_parser(prog="resnode gradcheck", description=summary(gradcheck_command))
        self.add_default_arguments_to_parser(gradcheck)
        self.add_core_arguments_to_parser(gradcheck)
        self.add_arguments_to_parser(gradcheck)
        gradcheck.add_method_arguments(Trainer, "fit", skip=set(self.subcommands()["fit"]))
        add_signature(gradcheck, gradcheck_command.gradcheck_options)
        subcommands.add_subcommand(
            "gradcheck", gradcheck, help="The adjoint's gradient error of a config's network over depths."
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(SkipNonFiniteSteps, "skip_non_finite")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse; our own subcommands run here and exit with their status."""
        self.arguments = [str(a) for a in (sys.argv[1:] if args is None else args)]
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand in self.OWN_SUBCOMMANDS:
            with reported_as_input_errors(self):
                status = self.run_own_subcommand(subcommand, self.config[subcommand])
            raise SystemExit(status)

    def run_own_subcommand(self, subcommand: str, config: Namespace) -> int:
        if subcommand == "configs":
            return describe_configs()
        if subcommand == "sweep":
            return sweep_command(config.file, config.dry_run, config.count, config.extra, parse=resnode_cli)
        return gradcheck_command.run(self.parser.subcommands_action.choices["gradcheck"], config)

    # -- the checkpoint (replaces LightningCLI's merge of its hyper-parameters) ------------------
    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path``, read as data: resolved (a file, a run folder, ``last``), read weights-only,
        its hyper-parameters checked against the trust boundary and against the config (:mod:`.resume`)."""
        subcommand = self.config.get("subcommand")
        if subcommand not in self.subcommands():
            return
        config = self.config[subcommand]
        self.resumed_run = self.checkpoint_network = None
        if not config.get("ckpt_path"):
            return
        with reported_as_input_errors(self):
            value = str(config.ckpt_path)
            check_local(value, "--ckpt_path")
            purpose = "resume" if subcommand == "fit" else "weights"
            runs_of_config = Path(config.trainer.default_root_dir or RUNS) / self.run_name(config)
            try:
                path = resolve_checkpoint(value, purpose, runs_of_config, option="--ckpt_path")
            except FileNotFoundError:
                if value != "last" or subcommand != "fit":
                    raise
                # one command serves every start of a requeued job: the first one starts afresh
                rank_zero_warn(
                    f"--ckpt_path last: no earlier run in {str(runs_of_config)!r} has a checkpoints/last.ckpt; "
                    "training starts from scratch."
                )
                config.ckpt_path = None
                return
            if config.get("weights_only") is False and not Path(value).is_file():
                raise ValueError(
                    f"--weights_only false loads code a checkpoint carries; it is accepted only for a file named "
                    f"by its path, not for {value!r} (which found {str(path)!r}). Give that path if you trust it."
                )
            trusted_by_name = config.get("weights_only") is False  # only for a named file (checked above)
            checkpoint = read_checkpoint(path, weights_only=not trusted_by_name)
            if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
                raise ValueError(
                    f"--ckpt_path {str(path)!r} holds weights but no training state (not a Lightning checkpoint): "
                    "--ckpt_path continues a run; to start from these weights, give --model.init_from instead."
                )
            hyperparameters = dict(checkpoint.get("hyper_parameters") or {})
            hyperparameters.pop("_instantiator", None)
            named_by_user = [code for _, code in code_references(config.model.as_dict())]
            check_hyperparameters(hyperparameters, str(path), named_by_user)
            check_same_model(subcommand, config.model.as_dict(), hyperparameters, path)
            config.ckpt_path = str(path)
            if config.get("weights_only") is None:
                config.weights_only = True  # every checkpoint of ours loads weights-only
            if subcommand == "fit":
                check_room_to_train(config.trainer, checkpoint, path)
            self.checkpoint_network = network_state_dict(checkpoint)
            if subcommand == "fit":
                self.resumed_run = run_folder_of(path)

    def given_and_from_files(self, config: Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
        """The run's config and what its config files alone give, flattened: their differences are the
        flags. Read back from the parser, not from argv (``--key value``, ``--key=value``, lists...)."""
        given = {k: v for k, v in flatten(config.as_dict()).items() if not k.startswith(NOT_IN_TITLE)}
        files = [word for path in config.get("config") or [] for word in ("--config", str(path))]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # not the user's error: nothing to show
                parsed = self.parser.parse_args([self.subcommand, *files] if self.subcommand else files)
        except SystemExit:  # the files alone are incomplete (the flags give a required value)
            return given, {}
        return given, flatten(self.active_config(parsed).as_dict())

    def run_name(self, config: Namespace) -> str:
        """The run's name: a logger's explicit one (a saved config run again), else the first config file's."""
        loggers = [logger for logger in always_list(config.trainer.logger) if hasattr(logger, "init_args")]
        named = [logger.init_args.name for logger in loggers if logger.init_args.get("name") not in NO_NAME]
        return named[0] if named else Path(config.config[0]).stem if config.get("config") else "resnode"

    # -- the run folder ---------------------------------------------------------------------------
    def active_config(self, config: Namespace | None = None) -> Namespace:
        """The subcommand's part of ``config`` (default: the run's), or all of it when a Python
        caller runs no subcommand (``run=False``)."""
        config = self.config if config is None else config
        return config[self.subcommand] if self.subcommand else config

    def before_instantiate_classes(self) -> None:
        with reported_as_input_errors(self):
            config = self.active_config()
            self.title = run_title(self.run_name(config), *self.given_and_from_files(config))
            if config.model.get("init_from") and not config.get("ckpt_path"):  # a resume does not use it
                config.model.init_from = str(resolve_checkpoint(config.model.init_from, "weights", option="init_from"))
            self.run_folder = self.make_run_folder(config)

    def make_run_folder(self, config: Namespace) -> Path:
        """Give the run its folder and point the trainer, the checkpoints and every logger there: a new
        ``runs/<name>/version_<k>``, or, resuming a checkpoint of such a folder, that folder. The config
        saved with a new run keeps the names but not the folder, so that running it again makes a new one."""
        loggers = [logger for logger in always_list(config.trainer.logger) if hasattr(logger, "init_args")]
        name = self.name_loggers(config, loggers)
        saved = copy.deepcopy(config)
        if saved.get("ckpt_path"):
            saved.ckpt_path = None  # the saved config starts a run; resuming names the checkpoint again
        resumed_run = getattr(self, "resumed_run", None)
        self.save_config_kwargs.update(saved=saved, overwrite=resumed_run is not None)
        root = Path(config.trainer.default_root_dir or RUNS)
        if resumed_run is not None:
            folder = continue_run_folder(resumed_run)
            root = folder.parent.parent
        else:
            folder = new_run_folder(root, name)
        config.trainer.default_root_dir = str(folder)
        self.point_checkpoints(config, folder)
        point_loggers(loggers, root, folder)
        return folder

    def name_loggers(self, config: Namespace, loggers: list) -> str:
        """Give the loggers that have no name the run's (W&B's with the overriding flags)."""
        name = self.run_name(config)
        for logger in loggers:
            if logger.init_args.get("name") in NO_NAME:
                wandb = logger.class_path.endswith("WandbLogger")
                logger.init_args.name = self.title if wandb else name
        return name

    def point_checkpoints(self, config: Namespace, folder: Path) -> None:
        """Checkpoints into ``folder/checkpoints``. One ModelCheckpoint cannot save best.ckpt after
        each validation and last.ckpt every n steps (its triggers are exclusive, and a step trigger
        would save "best" weights that were never validated): ``checkpoint.every_n_train_steps``
        goes to a second one, for last.ckpt. A signal saves last.ckpt too (:class:`CheckpointOnSignal`)."""
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(folder / "checkpoints")
        every_n_train_steps, config.checkpoint.every_n_train_steps = config.checkpoint.every_n_train_steps, None
        self.trainer_defaults = {
            **self.trainer_defaults,
            "callbacks": [
                RandomStates(),
                SIGNALS.training_started,
                CheckpointOnSignal(config.checkpoint.dirpath),
                *step_checkpoint(config.checkpoint.dirpath, every_n_train_steps),
                ResumedEpochProgress(),
                *([LearningRateMonitor(logging_interval="step")] if has_loggers(config.trainer.logger) else []),
            ],
        }

    # -- building and checking ----------------------------------------------------------------------
    def instantiate_classes(self) -> None:
        """Build the model, the data and the trainer; a config that cannot be built (a depth of 0,
        a missing ``init_from``, a checkpoint that does not fit...) is reported in one line, before
        any training work."""
        with reported_as_input_errors(self):
            super().instantiate_classes()
            self.check_checkpoint_fits()
            self.check_global_batch(self.active_config())
            if self.subcommand == "fit":
                self.check_before_fit()

    def check_checkpoint_fits(self) -> None:
        """The ``--ckpt_path`` network's tensors have the names and shapes of this model's."""
        if getattr(self, "checkpoint_network", None) is not None:
            check_network_fits(
                {key: tuple(t.shape) for key, t in self.model.network.state_dict().items()},
                {key: tuple(t.shape) for key, t in self.checkpoint_network.items()},
                self.active_config().ckpt_path,
            )

    def check_before_fit(self) -> None:
        """What can be checked before ``fit`` starts: room for the checkpoints, the ``init_from``
        weights (loaded now, so that a missing file or a mismatch stops the run before any data work),
        the optimizer's options and where the data is."""
        config = self.active_config()
        network_bytes = sum(t.numel() * t.element_size() for t in self.model.network.state_dict().values())
        # best.ckpt and last.ckpt, each with the weights and up to two optimizer buffers per weight
        check_free_space(Path(config.trainer.default_root_dir), needed_bytes=2 * 3 * network_bytes)
        if config.get("ckpt_path") is None:
            self.model.initialise_from_checkpoint()
        try:  # torch checks lr, momentum, weight_decay when the optimizer is built, not in the config
            self.model.configure_optimizers()
        except ValueError as error:
            raise ValueError(f"model.optimizer: {error} (check its init_args in the config or the flags).") from None
        if callable(check_data := getattr(self.datamodule, "check_data", None)):
            check_data()
        if launched_rank() == 0:  # decoding errors (a corrupt image) are input errors too; the decoded cache is kept
            self.datamodule.prepare_data()

    def check_global_batch(self, config: Namespace) -> None:
        """``data.batch_size`` is the global batch: it must divide among the processes
        (:func:`batch_per_process`), and a run of several processes, or one that accumulates
        gradients, says what one optimizer step takes, with the learning rate it takes it at."""
        batch_size = getattr(self.datamodule, "batch_size", None)
        if not isinstance(batch_size, int):
            return
        processes, accumulate = self.trainer.world_size, self.trainer.accumulate_grad_batches
        per_process = batch_per_process(batch_size, processes)
        if self.subcommand == "fit" and (processes > 1 or accumulate > 1) and launched_rank() == 0:
            accumulated = f" x {accumulate} accumulated = {batch_size * accumulate}" if accumulate > 1 else ""
            lr = (config.model.get("optimizer") or {}).get("init_args", {}).get("lr")
            print(
                f"Batch: {processes} process{'es' * (processes > 1)} x {per_process} = {batch_size} (data.batch_size, "
                f"the global batch){accumulated} per optimizer step, at learning rate {lr}.",
                flush=True,
            )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The trainer, writing its checkpoints atomically (:class:`AtomicCheckpointIO`) unless a
        plugin chose another writer."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    # -- running ------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        SIGNALS.stop_hint = (
            f"The run is resumable: {self.run_folder / 'checkpoints' / 'last.ckpt'}; continue it with the same "
            "command and --ckpt_path last."
        )

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
        validated = best and checkpoint.best_model_score is not None
        score = f" ({checkpoint.monitor} {checkpoint.best_model_score:.4f})" if validated else ""
        checkpoints = [f"{best or '(no best: nothing validated)'}{score}", *([last] if last else [])]
        print(
            f"\nDone. Checkpoints: {', '.join(checkpoints)}; config: {run_folder / CONFIG}; logs: {run_folder}",
            flush=True,
        )


def describe_configs() -> int:
    """List the configs that ship with the package, by group, with what each reproduces."""
    print(describe_shipped_configs())
    return 0


@contextlib.contextmanager
def reported_as_input_errors(cli: ResNodeCLI) -> Iterator[None]:
    """Report an error raised while building the run from its config as ``error: <message>`` and
    exit with status 2, as for a parse error (``RESNODE_DEBUG=1`` shows the traceback instead).
    The run's folder is removed again if nothing was written into it."""
    try:
        yield
    except (ValueError, TypeError, OSError, MisconfigurationException) as error:
        folder = getattr(cli, "run_folder", None)
        if folder is not None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        if os.environ.get("RESNODE_DEBUG"):
            raise
        sys.stderr.write(f"error: {plain_message(error)}\n(RESNODE_DEBUG=1 shows where it was raised.)\n")
        raise SystemExit(2) from error


def plain_message(error: BaseException) -> str:
    """The error's message, without jsonargparse's wrapping of an error raised while building a class
    (``Does not validate against any of the Union subtypes ... Errors: - <ours> - Expected NoneType``)."""
    message = str(error)
    if "\nErrors:\n" not in message:
        return message
    reasons = [line.strip()[2:] for line in message.split("\nErrors:\n", 1)[1].splitlines() if line.strip()[:2] == "- "]
    reasons = [reason for reason in reasons if not reason.startswith("Expected a <class 'NoneType'>")]
    return reasons[0] if reasons else message


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
            if launched_rank() > 0:  # Lightning creates the W&B run on rank 0 alone: no login on the others
                init_args.offline = True
            elif not init_args.offline and (offline := offline_by_default()) is not None:
                init_args.offline = offline
        elif {"save_dir", "version"} <= set(init_args.keys()):  # CSV, TensorBoard: save_dir/name/version
            init_args.save_dir, init_args.name, init_args.version = str(root), folder.parent.name, folder.name
        if (ours := SAME_LOGGERS.get(logger.class_path)) is not None:  # the same logger, without its flaw
            logger.class_path = f"{ours.__module__}.{ours.__name__}"


def always_list(value) -> list:
    return value if isinstance(value, list) else [value]


def has_loggers(logger) -> bool:
    """Whether a trainer's ``logger`` option gives it loggers (None is Lightning's default one)."""
    return logger is not False and logger != []


def shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (as the user typed it)."""
    if not path:
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_title(name: str, given: dict[str, Any], from_files: dict[str, Any]) -> str:
    """The run's name for trackers: the config's name and the values that differ from what its
    config files say (``cifar_adjoint model.network.init_args.depth=32``): the flags that override them.

    Args:
        name: the run's name.
        given, from_files: the run's config and its config files' alone, flattened (:func:`flatten`).
    """
    overrides = [f"{key}={value}" for key, value in given.items() if value != from_files.get(key, value)]
    return " ".join([name, *overrides])


def main(args: ArgsType = None) -> ResNodeCLI:
    """Run the ``resnode`` command line (``args`` as on the command line, or from ``sys.argv``);
    returns the CLI, whose ``trainer``, ``model`` and ``datamodule`` a Python caller may inspect.

    ``configs``, ``sweep`` and ``gradcheck`` exit with their status (SystemExit). A run stopped by
    SIGTERM or SIGUSR1 exits with 128 + the signal's number, after saving a resumable checkpoint.
    """
    quiet_known_messages()
    SIGNALS.install()
    try:
        cli = resnode_cli(args)
    except SIGTERMException:
        stopped()
    finally:
        SIGNALS.uninstall()
    if SIGNALS.received is not None:
        stopped()
    return cli


def stopped() -> typing.NoReturn:
    sys.stderr.write(f"\nStopped by {SIGNALS.received.name if SIGNALS.received else 'SIGTERM'}. {SIGNALS.stop_hint}\n")
    raise SystemExit(SIGNALS.exit_status)


def command() -> None:
    """The ``resnode`` console script: :func:`main` on ``sys.argv`` (a console script exits with
    the value its function returns, so this one returns nothing: status 0 when the run ends).

    A DDP run's process group is shut down before the interpreter exits: left to exit, gloo's
    threads can abort the process after a successful run ("terminate called without an active
    exception", exit status -6)."""
    main()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def resnode_cli(args: ArgsType, **options) -> ResNodeCLI:
    """The ``resnode`` LightningCLI over ``args`` (``options`` go to LightningCLI, e.g. ``run=False``)."""
    return ResNodeCLI(
        ImageClassifier,
        LightningDataModule,
        trainer_class=ResNodeTrainer,
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
