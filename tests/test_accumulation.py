"""Gradient accumulation (``trainer.accumulate_grad_batches``) with the adjoint: k micro-batches make
one optimizer step, the step of their union, also with frozen stages; BatchNorm sees each
micro-batch once, as with backprop (the adjoint runs one backward per micro-batch)."""

import functools

import pytest
import torch
from ddp_helpers import TanhStackNet
from training_helpers import RandomImages, trainer

from resnode_lightning.models import ResNet
from resnode_lightning.training import ImageClassifier

SAMPLES = 32


def one_step(tmp_path, network: torch.nn.Module, micro_batches: int, **options) -> ImageClassifier:
    """One optimizer step of plain SGD on the first 32 samples, taken as ``micro_batches`` accumulated batches."""
    model = ImageClassifier(network, num_classes=4, optimizer=functools.partial(torch.optim.SGD, lr=0.5), **options)
    data = RandomImages(samples=SAMPLES, batch_size=SAMPLES // micro_batches, channels=network_channels(network))
    fit = trainer(tmp_path / str(micro_batches), limit_train_batches=micro_batches, limit_val_batches=0,
                  accumulate_grad_batches=micro_batches)  # fmt: skip
    fit.fit(model, data)
    assert fit.global_step == 1
    return model


def network_channels(network: torch.nn.Module) -> int:
    return 1 if isinstance(network, TanhStackNet) else 3


def tanh_net(gradient: str) -> TanhStackNet:
    torch.manual_seed(0)
    return TanhStackNet(num_classes=4, gradient=gradient)


@pytest.mark.parametrize("trainable_stages", [None, [2]], ids=["all trained", "a frozen stage"])
def test_accumulated_micro_batches_through_the_adjoint_take_the_step_of_their_union(tmp_path, trainable_stages):
    whole = one_step(tmp_path / "whole", tanh_net("adjoint"), 1, trainable_stages=trainable_stages)
    accumulated = one_step(tmp_path / "parts", tanh_net("adjoint"), 4, trainable_stages=trainable_stages)
    before = tanh_net("adjoint").state_dict()
    for key, value in whole.network.state_dict().items():
        torch.testing.assert_close(accumulated.network.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    moved = {key for key, value in whole.network.state_dict().items() if not torch.equal(value, before[key])}
    if trainable_stages is None:
        assert moved == set(before)
    else:  # the tied stack trains, the untied one is frozen
        assert {k for k in before if k.startswith("tied.")} <= moved and not any(k.startswith("untied.") for k in moved)


def small_resnet(gradient: str) -> ResNet:
    torch.manual_seed(0)
    return ResNet(depth=[2, 2, 5, 2], base_width=4, num_classes=4, gradient=gradient)


def test_with_batchnorm_accumulating_through_the_adjoint_updates_the_statistics_as_backprop_does(tmp_path):
    """Each micro-batch normalises with its own statistics and moves the running ones once: the
    adjoint's rebuild and recompute in the backward leave them as they were."""
    adjoint = one_step(tmp_path / "adjoint", small_resnet([*["backprop"] * 2, "adjoint", "backprop"]), 4)
    backprop = one_step(tmp_path / "backprop", small_resnet("backprop"), 4)
    statistics = {k: v for k, v in backprop.network.state_dict().items() if "running_" in k or "num_batches" in k}
    assert any("stages.2" in key for key in statistics)
    for key, value in statistics.items():
        torch.testing.assert_close(adjoint.network.state_dict()[key], value, rtol=1e-6, atol=1e-7)
        if key.endswith("num_batches_tracked"):
            assert value == 4, key
