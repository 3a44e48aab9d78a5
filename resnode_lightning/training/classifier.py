"""The LightningModule: image classification with any network, the paper's training recipe and
its weight workflow (``init_from`` and ``trainable_stages``) as configuration."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ..models import load_weights, train_only
from .optimization import apply_lr_scales, parameter_groups, warmup
from .weights import read_network_weights

Batch = tuple[Tensor, Tensor]


def accuracy(num_classes: int, top_k: int) -> MulticlassAccuracy:
    """The fraction of samples whose label is among the k highest logits (the accuracy papers
    report: averaged over samples, not over classes as torchmetrics' default "macro" would)."""
    return MulticlassAccuracy(num_classes, top_k=top_k, average="micro")


def check_settings(num_classes: int, warmup_steps: int, label_smoothing: float) -> None:
    """Refuse numbers that would fail later (a traceback mid-training) or mean something else, by
    field name and with what the field is."""
    if not is_integer(num_classes) or num_classes < 1:
        raise ValueError(
            f"model.num_classes={num_classes!r} must be an integer >= 1: it is K, the number of classes "
            "of the data (the columns of the network's logits)."
        )
    if not is_integer(warmup_steps) or warmup_steps < 0:
        raise ValueError(
            f"model.warmup_steps={warmup_steps!r} must be an integer >= 0: it is the number of optimizer "
            "steps over which the learning rate rises linearly to its value; 0 turns warm-up off."
        )
    is_number = isinstance(label_smoothing, (int, float)) and not isinstance(label_smoothing, bool)
    if not is_number or not 0 <= label_smoothing < 1:
        raise ValueError(
            f"model.label_smoothing={label_smoothing!r} must lie in [0, 1): it is the ε of the "
            "cross-entropy's smoothed targets; 0 turns it off."
        )


def is_integer(value: object) -> bool:
    """Whether ``value`` is an int (a bool is not: ``True`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


LR_KEY = "train/lr"
"""What ``LearningRateMonitor`` logs the learning rate under (the name of every schedule)."""

class ImageClassifier(LightningModule):
    """Trains ``network`` (images → logits) with cross-entropy and reports top-1/top-5 accuracy.

    The loss is the cross-entropy of the logits, with optional label smoothing ε:
    L = −Σ_c q_c log softmax(z)_c, q = (1 − ε) onehot(y) + ε/K. Metrics are torchmetrics objects,
    one set per split: ``train/loss``, ``train/acc`` per step (written every
    ``log_every_n_steps``), ``train/epoch_loss``, ``train/epoch_acc`` over each epoch (written
    once per epoch, however short it is); ``val/loss``, ``val/acc1``, ``val/acc5``; the same under
    ``test/`` (top-5 only with more than 5 classes). The learning rate is Lightning's
    ``LearningRateMonitor``'s to log (the CLI adds one): every schedule is named ``train/lr``, the
    key it logs under (``train/lr/<group>`` with several parameter groups).

    The paper's transfer (its Table 2) is two options: ``init_from`` loads the weights of a
    checkpoint file into the network (read weights-only by
    :func:`~resnode_lightning.training.weights.read_network_weights`, loaded by
    :func:`~resnode_lightning.models.load_weights`: a tied or shallower network's weights are
    untied and deepened to this network's depths),
    and ``trainable_stages`` freezes every other part through
    :func:`~resnode_lightning.models.train_only`. The optimizer is built afterwards, on the
    trainable parameters only. Resuming a run (``--ckpt_path``) keeps both: the frozen parts stay
    frozen and the optimizer state matches the same parameters.

    Args:
        network: the classifier, any ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits,
            given by ``class_path`` (e.g. ``resnode_lightning.models.SimpleResNet``).
        num_classes: K >= 1, the number of classes of the data (the CLI links it to the data module's).
        optimizer: the optimizer class and its arguments (``class_path: torch.optim.SGD`` with
            ``init_args: {lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}``).
        lr_scheduler: the learning-rate schedule (e.g. ``torch.optim.lr_scheduler.CosineAnnealingLR``
            with ``T_max`` = epochs, or ``MultiStepLR``); None keeps the learning rate constant.
        lr_scheduler_interval: whether the schedule steps once per ``"epoch"`` or per ``"step"``.
        warmup_steps: linear warm-up of the learning rate over the first optimizer steps (>= 0;
            0: none).
        label_smoothing: ε of the cross-entropy, in [0, 1) (0: none).
        no_weight_decay_on_norms_and_biases: no weight decay on biases and normalisation layers.
        scale_stack_lr_by_depth: learning rate N · lr for the parameters of a stack of depth N
            (the ``--adaptive`` option of the paper's code).
        init_from: weights to start from: a checkpoint file, Lightning's or a ``torch.save``d
            state dict (the ``resnode`` command line also takes a run folder or ``last`` and
            resolves it to a file before the model is built). Loaded once, when ``fit`` starts a
            new run, or ``validate``/``test`` run without ``--ckpt_path`` (the transferred
            network's accuracy); never over a ``--ckpt_path``.
        trainable_stages: train only these stages (numbered from 1 as in the paper, e.g. [3]);
            everything else is frozen, BatchNorm statistics included. None trains everything.

    Raises:
        ValueError: ``num_classes``, ``warmup_steps`` or ``label_smoothing`` out of range, in
            ``__init__`` (before any training); the message names the field and its range.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        warmup_steps: int = 0,
        label_smoothing: float = 0.0,
        no_weight_decay_on_norms_and_biases: bool = False,
        scale_stack_lr_by_depth: bool = False,
        init_from: str | None = None,
        trainable_stages: list[int] | None = None,
    ) -> None:
        super().__init__()
        check_settings(num_classes, warmup_steps, label_smoothing)
        with warnings.catch_warnings():  # from a config they are plain values; from Python, objects:
            warnings.filterwarnings("ignore", "Attribute 'network' is an instance of `nn.Module`")
            self.save_hyperparameters(logger=False)  # loggers get the whole config instead
        if isinstance(self.hparams["network"], nn.Module):
            # keep the checkpoint's hyper-parameters plain values (loadable with weights_only)
            self.remove_ignored_hparams(["network", "optimizer", "lr_scheduler"])
        self.network = network
        self.num_classes = num_classes
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.warmup_steps = warmup_steps
        self.label_smoothing = label_smoothing
        self.no_weight_decay_on_norms_and_biases = no_weight_decay_on_norms_and_biases
        self.scale_stack_lr_by_depth = scale_stack_lr_by_depth
        self.init_from = init_from
        self.initialised_from: Path | None = None
        if trainable_stages is not None:
            train_only(network, trainable_stages)
        self.train_metrics = MetricCollection({"acc": accuracy(num_classes, top_k=1)}, prefix="train/")
        evaluation = {"acc1": accuracy(num_classes, top_k=1)}
        if num_classes > 5:
            evaluation["acc5"] = accuracy(num_classes, top_k=5)
        self.val_metrics = MetricCollection(evaluation, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images → (B, K) logits."""
        return self.network(images)

    def on_fit_start(self) -> None:
        """Load ``init_from`` when ``fit`` starts a new run (not when it resumes with ``--ckpt_path``).

        It runs after the optimizer is built: the weights are copied into the same parameters.
        """
        if self.trainer.ckpt_path is None:
            self.initialise_from_checkpoint()

    def on_validation_start(self) -> None:
        """``resnode validate`` without ``--ckpt_path`` measures the ``init_from`` weights: the
        accuracy of a transferred (untied, deepened) network before it is fine-tuned."""
        if self.trainer.state.fn == "validate" and self.trainer.ckpt_path is None:
            self.initialise_from_checkpoint()

    def on_test_start(self) -> None:
        """As :meth:`on_validation_start`, for ``resnode test``."""
        if self.trainer.state.fn == "test" and self.trainer.ckpt_path is None:
            self.initialise_from_checkpoint()

    def initialise_from_checkpoint(self) -> None:
        """Load the ``init_from`` weights into the network, once (the CLI calls it before ``fit``
        to report a missing or mismatching checkpoint before any data work).

        Raises:
            FileNotFoundError: no file at ``init_from``; the message names the field and the fix.
            ValueError: the file is not a readable checkpoint, or its weights do not fit the
                network (from :func:`~.weights.read_network_weights` and
                :func:`~resnode_lightning.models.load_weights`), prefixed with ``model.init_from``.
        """
        if self.init_from is None or self.initialised_from is not None:
            return
        path = Path(self.init_from)
        if not path.exists():
            raise FileNotFoundError(
                f"model.init_from: {str(path)!r} does not exist. Name a checkpoint file (a Lightning .ckpt "
                "or a torch.save'd state dict); on the resnode command line it may also be a run folder "
                "(runs/<name>/version_<k>) or the folder of a config's runs (runs/<name>)."
            )
        try:
            weights = read_network_weights(path)  # its errors name the file
        except ValueError as error:
            raise ValueError(f"model.init_from: {error}") from error
        try:
            load_weights(self.network, weights)
        except ValueError as error:
            raise ValueError(f"model.init_from={str(path)!r} does not fit the network: {error}") from error
        self.initialised_from = path
        rank_zero_info(f"Network initialised from {path}")

    def logits(self, images: Tensor) -> Tensor:
        """The network's logits, checked to have one column per class of the data."""
        logits = self.network(images)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the network returned logits of shape {tuple(logits.shape)}, but the data has "
                f"{self.num_classes} classes: set the network's num_classes to {self.num_classes} "
                f"(model.network.init_args.num_classes: {self.num_classes})."
            )
        return logits

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def training_step(self, batch: Batch, batch_index: int) -> Tensor:
        images, labels = batch
        logits = self.logits(images)
        loss = self.loss(logits, labels)
        accuracy = self.train_metrics(logits, labels)["train/acc"]  # this batch's
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict(self.train_metrics, prog_bar=True)
        # the per-step keys reach the loggers every log_every_n_steps only: an epoch with fewer
        # steps would leave no training row at all. Epoch means (weighted by batch size, so the
        # accuracy is the epoch's) are written once per epoch whatever its length; their own keys,
        # since on_step and on_epoch together would rename train/loss to train/loss_step.
        epoch_means = {"train/epoch_loss": loss, "train/epoch_acc": accuracy}
        self.log_dict(epoch_means, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def evaluation_step(self, batch: Batch, split: Literal["val", "test"], metrics: MetricCollection) -> None:
        images, labels = batch
        logits = self.logits(images)
        self.log(f"{split}/loss", self.loss(logits, labels), prog_bar=True, sync_dist=True)
        metrics(logits, labels)
        self.log_dict(metrics, prog_bar=True)

    def validation_step(self, batch: Batch, batch_index: int) -> None:
        self.evaluation_step(batch, "val", self.val_metrics)

    def test_step(self, batch: Batch, batch_index: int) -> None:
        self.evaluation_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: Batch, batch_index: int) -> Tensor:
        """The predicted class of every image of the batch."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.network(images).argmax(dim=1)

    def on_train_start(self) -> None:
        # the sanity check's validation batches ran through the same metric objects: drop them
        self.val_metrics.reset()

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        """The optimizer over the trainable parameters, in groups by rule, and its schedules, each
        named ``train/lr`` for ``LearningRateMonitor``; without one, the constant schedule (so that
        the key is the same whatever the config)."""
        groups = parameter_groups(self.network, self.no_weight_decay_on_norms_and_biases, self.scale_stack_lr_by_depth)
        if not groups:
            raise ValueError(
                "the network has no trainable parameter: trainable_stages froze everything. "
                "Name at least one stage to train, or set trainable_stages: null."
            )
        optimizer = apply_lr_scales(self.optimizer(groups))
        schedulers = []
        if self.lr_scheduler is not None:
            schedulers.append({"scheduler": self.lr_scheduler(optimizer), "interval": self.lr_scheduler_interval})
        if self.warmup_steps > 0:
            schedulers.append({"scheduler": warmup(optimizer, self.warmup_steps), "interval": "step"})
        if not schedulers:
            schedulers.append({"scheduler": torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, total_iters=0)})
        return [optimizer], [{**schedule, "name": LR_KEY} for schedule in schedulers]
