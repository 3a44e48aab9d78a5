"""The ``resnode`` command: a LightningCLI over :class:`ImageClassifier` and any data module.

``resnode fit --config cifar_adjoint.yaml`` trains; ``validate``, ``test`` and ``predict`` take
the same configs and ``--ckpt_path``; ``resnode configs`` lists the configs that ship with the
package, which ``--config`` finds by bare name from any folder. Every run writes into its own
folder ``runs/<config name>/version_<k>/``: the resolved config, the checkpoints and the logs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionConfigFile
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from . import __version__
from .training import ImageClassifier
from .training.config_files import describe_shipped_configs, resolve_config

DESCRIPTION = (
    "Train ResNets as discretised Neural ODEs (Euler/Heun) with a memory-free adjoint. "
    "`resnode configs` lists the shipped configs; `resnode fit --config NAME.yaml` trains one."
)
RUNS = "runs"
DEFAULT_LOGGER = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": RUNS}}
CHECKPOINT_DEFAULTS = {"monitor": "val/acc1", "mode": "max", "filename": "best", "save_last": True}


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
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Name the run after its first config file: its folder is ``runs/<name>/version_<k>``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        name = Path(config.config[0]).stem if config.get("config") else "resnode"
        loggers = config.trainer.logger
        if loggers in (None, False):
            if config.trainer.default_root_dir is None:
                config.trainer.default_root_dir = str(Path(RUNS) / name)
            return
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and init_args.get("name") in (None, "lightning_logs"):
                init_args.name = name

    def after_fit(self) -> None:
        """Say where the run's checkpoints, config and logs are (rank 0; every rank takes part in
        finding the run folder, which is a collective call under DDP)."""
        trainer = self.trainer
        run_folder = Path(trainer.log_dir)
        checkpoint = trainer.checkpoint_callback
        if not trainer.is_global_zero or checkpoint is None:
            return
        best = checkpoint.best_model_path
        score = f" ({checkpoint.monitor} {checkpoint.best_model_score:.4f})" if best else ""
        print(
            f"\nDone. Checkpoints: {best or '(no best: nothing validated)'}{score}, {checkpoint.last_model_path}; "
            f"config: {run_folder / 'config.yaml'}; logs: {run_folder}"
        )


def main(args: ArgsType = None) -> ResNodeCLI | None:
    """Run the ``resnode`` command line (``args`` as on the command line, or from ``sys.argv``);
    returns the CLI, whose ``trainer``, ``model`` and ``datamodule`` a Python caller may inspect."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["configs"]:
        print(describe_shipped_configs())
        return None
    return ResNodeCLI(
        ImageClassifier,
        LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={"logger": DEFAULT_LOGGER},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_kwargs={"version": __version__, "prog": "resnode", "description": DESCRIPTION},
        args=args,
    )
