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
from .checkpoints import resolve_checkpoint
from .optimization import apply_lr_scales, parameter_groups, warmup

Batch = tuple[Tensor, Tensor]


def accuracy(num_classes: int, top_k: int) -> MulticlassAccuracy:
    """The fraction of samples whose label is among the k highest logits (the accuracy papers
    report: averaged over samples, not over classes as torchmetrics' default "macro" would)."""
    return MulticlassAccuracy(num_classes, top_k=top_k, average="micro")


class ImageClassifier(LightningModule):
    """Trains ``network`` (images → logits) with cross-entropy and reports top-1/top-5 accuracy.

    The loss is the cross-entropy of the logits, with optional label smoothing ε:
    L = −Σ_c q_c log softmax(z)_c, q = (1 − ε) onehot(y) + ε/K. Metrics are torchmetrics objects,
    one set per split: ``train/loss``, ``train/acc``; ``val/loss``, ``val/acc1``, ``val/acc5``;
    the same under ``test/`` (top-5 only with more than 5 classes).

    The paper's transfer (its Table 2) is two options: ``init_from`` loads the weights of a
    checkpoint into the network through :func:`~resnode_lightning.models.load_weights` (weights
    only; a tied or shallower network's weights are untied and deepened to this network's depths),
    and ``trainable_stages`` freezes every other part through
    :func:`~resnode_lightning.models.train_only`. The optimizer is built afterwards, on the
    trainable parameters only. Resuming a run (``--ckpt_path``) keeps both: the frozen parts stay
    frozen and the optimizer state matches the same parameters.

    Args:
        network: the classifier, any ``nn.Module`` mapping (B, C, H, W) images to (B, K) logits,
            given by ``class_path`` (e.g. ``resnode_lightning.models.SimpleResNet``).
        num_classes: K, the number of classes of the data (the CLI links it to the data module's).
        optimizer: the optimizer class and its arguments (``class_path: torch.optim.SGD`` with
            ``init_args: {lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}``).
        lr_scheduler: the learning-rate schedule (e.g. ``torch.optim.lr_scheduler.CosineAnnealingLR``
            with ``T_max`` = epochs, or ``MultiStepLR``); None keeps the learning rate constant.
        lr_scheduler_interval: whether the schedule steps once per ``"epoch"`` or per ``"step"``.
        warmup_steps: linear warm-up of the learning rate over the first optimizer steps (0: none).
        label_smoothing: ε of the cross-entropy (0: none).
        no_weight_decay_on_norms_and_biases: no weight decay on biases and normalisation layers.
        scale_stack_lr_by_depth: learning rate N · lr for the parameters of a stack of depth N
            (the ``--adaptive`` option of the paper's code).
        init_from: weights to start from: a Lightning checkpoint or a ``torch.save``d state dict,
            or a run folder (``runs/<config>``: its latest run's best checkpoint). Loaded once,
            when ``fit`` starts a new run, or ``validate``/``test`` run without ``--ckpt_path``
            (the transferred network's accuracy); never over a ``--ckpt_path``.
        trainable_stages: train only these stages (numbered from 1 as in the paper, e.g. [3]);
            everything else is frozen, BatchNorm statistics included. None trains everything.
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
        to report a missing or mismatching checkpoint before any data work)."""
        if self.init_from is None or self.initialised_from is not None:
            return
        path = resolve_checkpoint(self.init_from)
        load_weights(self.network, path)
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
        self.train_metrics(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict(self.train_metrics, prog_bar=True)
        self.log("train/lr", self.base_lr(), prog_bar=False)
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

    def base_lr(self) -> float:
        """The learning rate of the schedule now (the first group's, without its ``lr_scale``)."""
        group = self.trainer.optimizers[0].param_groups[0]
        return group["lr"] / group.get("lr_scale", 1)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        """The optimizer over the trainable parameters, in groups by rule, and its schedules."""
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
        return [optimizer], schedulers
