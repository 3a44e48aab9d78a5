"""A whole training step in mixed precision with the adjoint: the float32 step's gradients within
the precision's own tolerance, and an overflowing gradient skipped by the loss scaler.

On CPU, Lightning turns ``precision="16-mixed"`` into bfloat16; float16 autocast is asked for with
an explicit ``MixedPrecision("16-mixed", "cpu", scaler)`` plugin, as presets/v100.yaml gets on GPUs.
"""

import functools

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule
from lightning.pytorch.plugins import MixedPrecision
from torch.utils.data import DataLoader, TensorDataset
from training_helpers import trainer

from resnode_lightning.models import SimpleResNet
from resnode_lightning.training import ImageClassifier


class KeepGradients(Callback):
    """The gradients the optimizer is about to use (after the loss scale is undone)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.gradients = {n: p.grad.detach().clone() for n, p in pl_module.network.named_parameters()}


class CifarSizedNoise(LightningDataModule):
    """One batch of 64 random 32x32 images (10x10 maps inside the simple ResNet), 4 classes."""

    num_classes = 4

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        images, labels = (
            torch.randn(64, 3, 32, 32, generator=generator),
            torch.randint(0, 4, (64,), generator=generator),
        )
        return DataLoader(TensorDataset(images, labels), batch_size=64)


def classifier(gradient: str) -> ImageClassifier:
    torch.manual_seed(0)
    network = SimpleResNet(depth=8, num_classes=4, scheme="heun", gradient=gradient)
    with torch.no_grad():  # residuals away from zero, as after training: the adjoint's rebuild has work to do
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return ImageClassifier(network, num_classes=4, optimizer=functools.partial(torch.optim.SGD, lr=0.1))


def precision_options(precision: str) -> dict:
    if precision == "16-mixed":
        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
    return {"precision": precision}


def step_gradients(tmp_path, gradient: str, precision: str) -> dict:
    keep = KeepGradients()
    run = trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[keep], **precision_options(precision))
    run.fit(classifier(gradient), CifarSizedNoise())
    return keep.gradients


def relative_error(gradients: dict, reference: dict) -> float:
    flat = torch.cat([g.flatten().float() for g in gradients.values()])
    exact = torch.cat([g.flatten() for g in reference.values()])
    return ((flat - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_a_mixed_precision_adjoint_step_has_the_float32_steps_gradients(tmp_path, precision):
    errors = {
        gradient: relative_error(step_gradients(tmp_path, gradient, precision),
                                 step_gradients(tmp_path, gradient, "32-true"))
        for gradient in ("adjoint", "backprop")
    }  # fmt: skip
    tolerance = {"bf16-mixed": 3e-2, "16-mixed": 1e-2}[precision]
    assert 0 < errors["adjoint"] < tolerance  # autocast ran (not bitwise equal), and stayed accurate
    assert errors["adjoint"] < 1.5 * errors["backprop"]  # the rebuild in half precision adds little


def test_an_overflowing_gradient_is_skipped_by_the_scaler_and_never_reaches_the_weights(tmp_path):
    model = classifier("adjoint")
    before = {n: p.detach().clone() for n, p in model.network.named_parameters()}
    poisoned = model.network.stack.blocks[3].conv1.weight  # a block inside the adjoint
    poisoned.register_hook(lambda gradient: gradient * float("inf"))
    options = precision_options("16-mixed")
    (plugin,) = options["plugins"]
    trainer(tmp_path, max_steps=1, limit_val_batches=0, **options).fit(model, CifarSizedNoise())
    after = dict(model.network.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in before)  # the step was skipped
    assert plugin.scaler.get_scale() == 2.0**15  # and the scale lowered for the next one (from 2^16)
    assert not model.trainer.optimizers[0].state  # no momentum built from the bad gradient
