"""The weight workflow of the paper's Table 2: untie, deepen, load across depths, freeze."""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from resnode_lightning.models import ResNet, SimpleResNet, deepen, load_weights, train_only, untie
from resnode_lightning.numerics import ResidualStack

IMAGES = (4, 3, 8, 8)


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial affine weights and running statistics, as training would."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model


def tied_resnet(depth: int | list[int] = 4, **options) -> ResNet:
    torch.manual_seed(0)
    return randomise_batchnorm(ResNet(depth=depth, base_width=4, tied=True, **options)).double()


def images() -> torch.Tensor:
    return torch.randn(*IMAGES, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def outputs(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    model.train(mode == "train")
    with torch.no_grad():
        return model(x)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- untie ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("build", [tied_resnet, lambda: SimpleResNet(depth=5, width=4, tied=True).double()])
def test_untying_keeps_the_function(build, mode):
    tied = build()
    untied = untie(copy.deepcopy(tied))
    assert all(not stack.is_tied for stack in untied.stacks)
    assert len({id(block) for block in untied.stacks[0].blocks}) == untied.stacks[0].depth
    x = images() if isinstance(tied, ResNet) else torch.randn(4, 3, 32, 32, dtype=torch.float64)
    assert torch.equal(outputs(untied, x, mode), outputs(tied, x, mode))


def test_untied_blocks_train_independently():
    model = untie(tied_resnet())
    first, second = model.stacks[0].blocks[:2]
    with torch.no_grad():
        first.conv1.weight.add_(1.0)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)


# -- deepen -----------------------------------------------------------------------------------


def convergence_rate(model: ResNet, stage_depths: list[int], x: torch.Tensor) -> float:
    """The factor by which ‖out_N − out_2N‖ shrinks when N doubles (geometric mean over the depths)."""
    results = [outputs(deepen(model, depth), x, "eval") for depth in stage_depths]
    gaps = [(a - b).norm().item() for a, b in zip(results, results[1:])]
    return (gaps[0] / gaps[-1]) ** (1 / (len(gaps) - 1))


@pytest.mark.parametrize(("scheme", "factor"), [("euler", 2), ("heun", 4)])
def test_deepening_a_tied_model_converges_at_the_order_of_its_scheme(scheme, factor):
    """A tied stack is Euler's (Heun's) method on dx/ds = f(x): with h = 1/N, doubling N divides
    the change of the output by 2 (by 4)."""
    rate = convergence_rate(tied_resnet(3, scheme=scheme), [3, 5, 9, 17, 33], images())
    assert factor * 0.85 < rate < factor * 1.15


def test_deepening_an_untied_model_converges_at_rate_one_over_n():
    """Piecewise-constant weights θ(s) keep the same limit ODE: the output converges as O(1/N)."""
    torch.manual_seed(0)
    model = randomise_batchnorm(ResNet(depth=5, base_width=4)).double()
    assert 1.7 < convergence_rate(model, [5, 9, 17, 33], images()) < 2.3


def test_deepening_changes_the_function_only_by_the_discretisation_error():
    tied = tied_resnet()
    x = images()
    before = outputs(tied, x, "eval")
    after = outputs(deepen(copy.deepcopy(tied), [4, 4, 64, 4]), x, "eval")
    assert (after - before).norm() < 0.05 * before.norm()


def test_deepen_takes_the_depth_of_the_constructor():
    model = deepen(ResNet(depth=2, base_width=4, tied=True), [4, 4, 64, 4])
    assert model.depth == [4, 4, 64, 4] and all(stack.is_tied for stack in model.stacks)
    simple = deepen(SimpleResNet(depth=2, width=4), 8, interpolation="linear")
    assert simple.stack.depth == 8 and simple.stack.h == 1 / 8
    with pytest.raises(ValueError, match="stage 3 has depth 1"):
        deepen(model, [4, 4, 1, 4])


def test_a_tied_model_refuses_a_plain_load_of_untied_weights():
    """load_state_dict would copy every block of the checkpoint into the one shared block, keep
    the last and report all keys matched; it is refused, and a tied checkpoint still loads."""
    untied = ResNet(depth=4, base_width=4)
    tied = ResNet(depth=4, base_width=4, tied=True)
    with pytest.raises(RuntimeError, match=r"stages.0.stack.blocks holds one block shared by 3 steps .*\(tied=False\)"):
        tied.load_state_dict(untied.state_dict())
    tied.load_state_dict(tied_resnet().float().state_dict())
    assert same_state(tied, tied_resnet().float())


# -- load_weights -----------------------------------------------------------------------------


def test_loading_a_tied_checkpoint_into_a_deeper_model_is_untie_then_deepen():
    """Block i of the target takes source block ⌊i·N/M⌋; stem, transitions, head and BatchNorm
    statistics are copied."""
    tied = tied_resnet()
    loaded = load_weights(ResNet(depth=[4, 4, 64, 4], base_width=4).double(), tied.state_dict())
    assert same_state(loaded, untie(deepen(copy.deepcopy(tied), [4, 4, 64, 4])))
    assert torch.equal(loaded.head.norm.running_var, tied.head.norm.running_var)
    assert not loaded.stacks[2].is_tied


def test_loading_a_deep_untied_checkpoint_into_a_shallower_model_takes_every_kth_block():
    torch.manual_seed(0)
    deep = ResNet(depth=[3, 3, 9, 3], base_width=4)
    shallow = load_weights(ResNet(depth=[3, 3, 3, 3], base_width=4), deep.state_dict())
    for i, block in enumerate(shallow.stacks[2].blocks):
        assert same_state(block, deep.stacks[2].blocks[4 * i])  # ⌊i · 8 / 2⌋


def test_weights_under_a_prefix_load_and_other_copies_are_ignored():
    """A state dict holding the model under "network." (a Lightning module's state_dict) next to
    other weights (an EMA copy, a loss's) loads the copy its prefix names."""
    tied = tied_resnet()
    state = {
        **{f"ema.{k}": torch.zeros_like(v) for k, v in tied.state_dict().items()},  # listed first
        **{f"network.{k}": v for k, v in tied.state_dict().items()},
        "loss.weight": torch.ones(10),
    }
    reference = load_weights(ResNet(depth=8, base_width=4).double(), tied.state_dict())
    assert same_state(load_weights(ResNet(depth=8, base_width=4).double(), state, prefix="network."), reference)
    ema = load_weights(ResNet(depth=8, base_width=4).double(), state, prefix="ema.")
    assert all(torch.equal(v, torch.zeros_like(v)) for v in ema.state_dict().values() if v.is_floating_point())


def test_a_state_dict_holding_several_models_is_refused_listing_their_prefixes():
    state = tied_resnet().state_dict()
    two_copies = {**{f"student.{k}": v for k, v in state.items()}, **{f"teacher.{k}": v for k, v in state.items()}}
    with pytest.raises(ValueError, match="no model under prefix='' .* under 'student.', 'teacher.'. Pass the prefix"):
        load_weights(ResNet(depth=4, base_width=4), two_copies)
    loaded = load_weights(ResNet(depth=4, base_width=4).double(), two_copies, prefix="teacher.")
    assert same_state(loaded, tied_resnet())


@pytest.mark.parametrize("path", ["tied.pt", Path("tied.pt")], ids=["str", "Path"])
def test_models_read_no_files_and_say_where_files_are_read(path):
    with pytest.raises(TypeError, match=r"not the path 'tied.pt': the models layer reads no files; .*"
                       r"resnode_lightning.training.weights.read_network_weights\(path\)"):  # fmt: skip
        load_weights(ResNet(depth=4, base_width=4), path)


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        (lambda: [torch.ones(1)], TypeError, "got a list: pass model.state_dict\\(\\), or read a checkpoint file"),
        (
            lambda: {"epoch": 3, "state_dict": tied_resnet().state_dict()},
            ValueError,
            "holds a 'state_dict' entry: it is a whole Lightning checkpoint. .*network_state_dict\\(checkpoint\\)",
        ),
        (lambda: {"stem.conv.weight": [[1.0]]}, ValueError, "entry 'stem.conv.weight' is a list"),
    ],
    ids=["not-a-mapping", "lightning-checkpoint", "not-tensors"],
)
def test_what_is_not_a_state_dict_is_refused_saying_what_it_is(given, error, message):
    with pytest.raises(error, match=message):
        load_weights(ResNet(depth=4, base_width=4), given())


def test_a_compiled_model_loads_and_is_loaded_like_its_network():
    """torch.compile wraps the network under "_orig_mod." (nothing is compiled until it runs)."""
    tied = tied_resnet()
    compiled = torch.compile(ResNet(depth=4, base_width=4).double())
    assert load_weights(compiled, tied.state_dict()) is compiled
    assert same_state(compiled._orig_mod, untie(copy.deepcopy(tied)))
    from_compiled = load_weights(ResNet(depth=4, base_width=4).double(), compiled.state_dict())
    assert same_state(from_compiled, compiled._orig_mod)


def checkpoint_without(key: str) -> dict:
    state = tied_resnet().state_dict()
    del state[key]
    return state


@pytest.mark.parametrize(
    ("target", "checkpoint", "message"),
    [
        (
            lambda: ResNet(depth=4, base_width=8),
            lambda: tied_resnet().state_dict(),
            r"checkpoint tensor 'stem.conv.weight' has shape \(4, 3, 3, 3\) but the model's has shape \(8, 3, 3, 3\)",
        ),
        (
            lambda: ResNet(depth=4, base_width=4, num_classes=100),
            lambda: tied_resnet().state_dict(),
            r"'head.fc.weight' has shape \(10, 32\) but the model's has shape \(100, 32\)",
        ),
        (
            lambda: ResNet(depth=4, base_width=4),
            lambda: checkpoint_without("stages.1.transition.shortcut.norm.running_mean"),
            "no tensor 'stages.1.transition.shortcut.norm.running_mean'",
        ),
        (
            lambda: ResNet(depth=4, base_width=4),
            lambda: {**tied_resnet().state_dict(), "stages.4.transition.residual.conv1.weight": torch.ones(1)},
            "tensor 'stages.4.transition.residual.conv1.weight' .* has no place in the model",
        ),
        (
            lambda: ResNet(depth=4, base_width=4),
            lambda: SimpleResNet(width=4).state_dict(),
            "no tensor 'stages.0.transition.residual.conv1.weight' .* holds 'stack.blocks.0.conv1.weight', "
            "which the model has no place for: it comes from another architecture \\(another model class",
        ),
        (
            lambda: ResNet(depth=4, base_width=4, tied=True),
            lambda: ResNet(depth=4, base_width=4).state_dict(),
            "stages.0.stack is tied in the model, but the checkpoint has 3 different blocks",
        ),
    ],
    ids=["widths", "classes", "missing", "extra-stage", "other-model", "untied-into-tied"],
)
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_tensor(target, checkpoint, message):
    with pytest.raises(ValueError, match=message):
        load_weights(target(), checkpoint())


# -- freezing ---------------------------------------------------------------------------------


def test_frozen_parts_keep_their_batchnorm_statistics_through_model_train():
    model = train_only(ResNet(depth=3, base_width=4), [3])
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1], model.stages[3], model.head]
    assert all(not m.training for part in frozen for m in part.modules())
    assert all(m.training for m in model.stages[2].modules())
    assert all(not p.requires_grad for part in frozen for p in part.parameters())
    before = copy.deepcopy(model.stages[3].state_dict())
    model(torch.randn(*IMAGES))
    assert all(torch.equal(before[k], v) for k, v in model.stages[3].state_dict().items())
    assert model.stages[2].transition.residual.bn1.num_batches_tracked == 1


def test_unfreezing_makes_everything_trainable_again():
    model = train_only(ResNet(depth=3, base_width=4), [3]).unfreeze().train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_train_only_names_stages_from_one_to_four():
    with pytest.raises(ValueError, match="stages=\\[0\\] names no stage 0: the stages of ResNet are numbered 1 to 4"):
        train_only(ResNet(depth=2, base_width=4), [0])


def test_train_only_works_on_the_simple_resnet_whose_stack_is_stage_1():
    model = train_only(SimpleResNet(depth=3, width=4), [1]).train()
    assert all(p.requires_grad for p in model.stack.parameters())
    assert not any(p.requires_grad for part in (model.stem, model.head) for p in part.parameters())
    assert not model.stem.norm.training and model.stack.blocks[0].bn1.training
    with pytest.raises(ValueError, match=r"names no stage 2: the stages of SimpleResNet are numbered 1 to 1 \(stack\)"):
        train_only(model, [2])


@pytest.mark.parametrize(
    ("model", "stages", "message"),
    [
        (lambda: ResNet(depth=2, base_width=4), 3, r"stages=3 must be a list of stage numbers, e.g. \[3\]"),
        (lambda: nn.Sequential(ResidualStack([nn.Linear(3, 3)])), [1], "derive it from .*models.Freezable"),
    ],
    ids=["bare-int", "not-freezable"],
)
def test_train_only_refuses_what_it_cannot_do_by_name(model, stages, message):
    with pytest.raises(TypeError, match=message):
        train_only(model(), stages)


def test_deepen_takes_n_per_stack_for_any_model_with_stacks():
    model = nn.Sequential(nn.Linear(3, 3), ResidualStack([nn.Linear(3, 3)] * 2), ResidualStack([nn.Linear(3, 3)]))
    deepen(model, [8, 4])
    assert [model[1].depth, model[2].depth] == [8, 4] and model[1].is_tied
    with pytest.raises(ValueError, match=r"depth=\[8\] has 1 values but Sequential has 2 residual stacks"):
        deepen(model, [8])


def test_deepening_a_model_with_step_1_warns_that_its_function_changes():
    with pytest.warns(UserWarning, match="step='1' from N = 1 to 3: h stays 1"):
        deepen(ResNet(depth=2, base_width=4, step="1"), 4)


def test_freezing_an_unknown_part_is_refused_by_name():
    with pytest.raises(ValueError, match="ResNet has no part 'stages.9' to freeze"):
        ResNet(depth=2, base_width=4).freeze(["stem", "stages.9"])


def test_frozen_stacks_before_the_trained_stage_take_no_adjoint_work():
    model = train_only(ResNet(depth=5, base_width=4, gradient="adjoint", zero_init_last_bn=False), [3])
    calls = {number: 0 for number in (1, 2, 3, 4)}
    for number, stack in enumerate(model.stacks, start=1):
        for block in set(stack.blocks):
            block.register_forward_hook(lambda *_, number=number: calls.__setitem__(number, calls[number] + 1))
    images = torch.randn(*IMAGES)
    loss = model(images).square().mean()
    after_forward = dict(calls)
    loss.backward()
    backward = {number: calls[number] - after_forward[number] for number in calls}
    assert backward[1] == backward[2] == 0  # nothing before them to differentiate
    assert backward[3] > 0 and backward[4] > 0  # stage 4 passes the input gradient back to stage 3
    assert all(p.grad is None for stage in (0, 1, 3) for p in model.stages[stage].parameters())
    assert all(p.grad is not None for p in model.stages[2].parameters())
    # the same gradients as a full sweep through the frozen stacks (asked for by an input that needs one)
    trained = [p.grad.clone() for p in model.stages[2].parameters()]
    model.zero_grad(set_to_none=True)
    model(images.requires_grad_(True)).square().mean().backward()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.stages[2].parameters(), trained))


# -- the whole chain (Table 2, CIFAR) ---------------------------------------------------------


def test_table_2_chain_tied_pretraining_untied_deeper_fine_tuning_of_stage_3():
    """Pretrain tied with 4 blocks per stage; load its state dict into an untied [4, 4, 64, 4]
    model whose stage 3 uses the adjoint and is the only one trained: one SGD step moves stage 3
    only."""
    torch.manual_seed(0)
    pretrained = ResNet(depth=4, base_width=4, tied=True, zero_init_last_bn=False)
    pretrained(torch.randn(*IMAGES))  # train mode: running statistics move away from their init
    saved = copy.deepcopy(pretrained.state_dict())

    model = ResNet(depth=[4, 4, 64, 4], base_width=4, gradient=["backprop", "backprop", "adjoint", "backprop"])
    load_weights(model, saved)
    train_only(model, [3]).train()
    assert model.stacks[2].depth == 63 and not model.stacks[2].is_tied

    before = copy.deepcopy(model.state_dict())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(*IMAGES), torch.arange(4)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

    after = model.state_dict()
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    for key, value in after.items():
        if key.startswith("stages.2."):
            assert key not in parameters or not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key  # parameters and BatchNorm buffers alike
    assert math.isfinite(nn.functional.cross_entropy(model(x), y).item())
