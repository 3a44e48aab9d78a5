"""The loggers a run writes with: Lightning's, with a metrics file that survives a resumed run and
W&B without a deprecated setting it does not use."""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, which continues an existing ``metrics.csv`` instead of deleting it
    (Lightning deletes it when the folder is not empty, warning that it "will be deleted"): the
    existing header is taken as the known columns, and a new column rewrites the file with the
    old rows kept."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])


class ResumableCSVLogger(CSVLogger):
    """:class:`~lightning.pytorch.loggers.CSVLogger` whose ``metrics.csv`` holds every part of a
    run that was stopped and resumed in its folder (:class:`AppendingExperimentWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class QuietWandbLogger(WandbLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.WandbLogger`, with two fixes:

    - it no longer passes ``anonymous=None`` to ``wandb.init`` when the setting is not given:
      wandb warns on every run that "the anonymous setting has no effect" for any value;
    - ``offline`` is passed to ``wandb.init`` as its ``mode``: Lightning only sets ``WANDB_MODE``,
      which wandb reads once, when it is first set up (by the ``wandb.login`` that decides
      whether a run can go online, here earlier), so the run would try to log in.
    """

    def __init__(self, *args, anonymous: bool | None = None, offline: bool = False, **kwargs) -> None:
        if offline and kwargs.get("mode") is None:  # from a config, wandb.init's options come as None
            kwargs["mode"] = "offline"
        super().__init__(*args, anonymous=anonymous, offline=offline, **kwargs)
        if anonymous is None:
            self._wandb_init.pop("anonymous", None)
