"""Weights & Biases for every run: offline by itself without an account, the full config as the run's
config, and where the run's checkpoints and offline files are."""

from __future__ import annotations

import os

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


def wandb_credentials() -> bool:
    """Whether this machine has a W&B API key, as wandb itself finds one (``WANDB_API_KEY``, a
    ``wandb login`` entry in ~/.netrc, its settings), without prompting. With a key, wandb looks
    up the account's name over the network (it waits about 5 s for a network there is not: on such
    a node set ``WANDB_MODE=offline``)."""
    import wandb  # half a second: only for runs with a W&B logger

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except wandb.errors.UsageError:  # "No API key configured", where there is no terminal to prompt on
        return False


def offline_by_default() -> bool | None:
    """Whether a W&B logger should run offline when its config does not say: ``WANDB_MODE`` decides
    when it is set (None: leave it to wandb); otherwise offline exactly when there is no account,
    so that a run never prompts for a login or waits for a network it does not have."""
    if os.environ.get("WANDB_MODE"):
        return None
    return not wandb_credentials()  # called on rank 0 only: the W&B run is rank 0's


def wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


class SaveConfigEverywhere(SaveConfigCallback):
    """Writes the resolved config into the run folder (as Lightning does) and, on rank 0, gives it to
    every W&B logger as the run's config, nested as in the YAML file (not flattened).

    ``saved``: the config to write, when it differs from the one the run was built from (the CLI
    leaves out the run's own folder, so that the saved config runs again into a new one).
    """

    def __init__(self, parser, config, *args, saved=None, **kwargs) -> None:
        super().__init__(parser, config if saved is None else saved, *args, **kwargs)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in wandb_loggers(trainer):
            logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)


def finish_wandb_runs(trainer: Trainer, checkpoints: dict[str, str]) -> None:
    """Put the checkpoint paths into each W&B run's summary and finish the run, which writes its
    files (rank 0). wandb then prints where an offline run is and the `wandb sync` that uploads it."""
    for logger in wandb_loggers(trainer):
        for key, path in checkpoints.items():
            if path:
                logger.experiment.summary[key] = path
        logger.experiment.finish()
