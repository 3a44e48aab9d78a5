"""Parameter groups by rule, learning-rate scaling by depth and warm-up: each rule off by default."""

import pytest
import torch

from resnode_lightning.models import ResNet, SimpleResNet, train_only
from resnode_lightning.training import apply_lr_scales, parameter_groups, warmup


def small_resnet(**options) -> ResNet:
    return ResNet(depth=[2, 3, 5, 2], base_width=4, **options)


def test_with_no_rule_there_is_one_group_of_every_trainable_parameter():
    model = small_resnet()
    (group,) = parameter_groups(model)
    assert group["params"] == list(model.parameters()) and group["lr_scale"] == 1 and "weight_decay" not in group


def test_norms_and_biases_get_no_weight_decay_when_asked():
    model = SimpleResNet(depth=3)
    groups = parameter_groups(model, no_weight_decay_on_norms_and_biases=True)
    decayed = [p for g in groups if "weight_decay" not in g for p in g["params"]]
    undecayed = [p for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    norms_and_biases = {id(p) for p in [*biases, *(p for m in norms for p in m.parameters())]}
    assert {id(p) for p in undecayed} == norms_and_biases
    assert all(p.ndim > 1 for p in decayed) and len(decayed) + len(undecayed) == len(list(model.parameters()))


def test_a_stack_of_depth_n_gets_n_times_the_learning_rate():
    model = small_resnet()
    optimizer = apply_lr_scales(torch.optim.SGD(parameter_groups(model, scale_stack_lr_by_depth=True), lr=0.1))
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for stack in model.stacks:
        assert all(lr_of[id(p)] == pytest.approx(0.1 * stack.depth) for p in stack.parameters())
    assert all(lr_of[id(p)] == pytest.approx(0.1) for p in model.stem.parameters())
    assert all(lr_of[id(p)] == pytest.approx(0.1) for p in model.stages[2].transition.parameters())


def test_tied_weights_appear_once_and_frozen_parts_not_at_all():
    model = train_only(small_resnet(tied=True), [3])
    params = [p for group in parameter_groups(model) for p in group["params"]]
    assert len(params) == len({id(p) for p in params})
    assert {id(p) for p in params} == {id(p) for p in model.stages[2].parameters()}


def test_warmup_rises_linearly_and_chains_with_an_epoch_schedule():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    linear = warmup(optimizer, steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        linear.step()
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])
    cosine.step()  # one epoch: cos(π/2) → factor 0.5, on top of the finished warm-up
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
