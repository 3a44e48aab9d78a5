"""The paper's models: ResNets whose stages are residual stacks, the simple ResNet, the linear and
the 1-D ResNets."""

import ast
import re
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from jsonargparse import ArgumentParser

from resnode_lightning.models import (
    PRESETS,
    LinearResNet,
    ResNet,
    ScalarResNet,
    SimpleResNet,
    factorisation_loss,
    fit_scalar_map,
    train_by_gradient_flow,
    trajectories_cross,
    weights_in_depth,
)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- ResNet presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_have_torchvision_parameters_plus_the_final_pre_activation_norm(preset):
    """Same convolutions, BatchNorms, shortcuts and head as torchvision's ResNet (v1.5): the
    pre-activation layout only moves the ReLUs and adds one BatchNorm before pooling, whose scale
    and shift add 2 x 512 (basic) or 2 x 2048 (bottleneck) parameters."""
    with torch.device("meta"):  # counting needs no memory and no initialisation
        ours = ResNet(preset, stem="imagenet", num_classes=1000)
        theirs = getattr(torchvision.models, preset)()
    final_channels = 512 * (4 if PRESETS[preset].block == "bottleneck" else 1)
    assert parameter_count(ours) == parameter_count(theirs) + 2 * final_channels


def test_cifar_stem_is_a_3x3_convolution_instead_of_7x7():
    with torch.device("meta"):
        cifar, imagenet = ResNet("resnet18", stem="cifar"), ResNet("resnet18", stem="imagenet")
    assert parameter_count(imagenet) - parameter_count(cifar) == 64 * 3 * (7 * 7 - 3 * 3)


def test_a_tied_stage_holds_one_block_for_all_its_steps():
    with torch.device("meta"):
        untied = ResNet("resnet34", tied=False)
        tied = ResNet("resnet34", tied=[False, False, True, False])
    block = parameter_count(untied.stages[2].stack.blocks[0])
    assert parameter_count(untied) - parameter_count(tied) == (6 - 2) * block
    assert tied.stacks[2].is_tied and tied.stacks[2].depth == 5


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_maps_images_to_logits(preset, stem):
    model = ResNet(preset, stem=stem, base_width=4, num_classes=7).eval()
    assert model.depth == list(PRESETS[preset].depth)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_free_stage_depths_give_stacks_of_depth_minus_one_with_h_one_over_n():
    model = ResNet(depth=[4, 4, 64, 4], base_width=4)
    assert [stack.depth for stack in model.stacks] == [3, 3, 63, 3]
    assert model.stacks[2].h == 1 / 63
    assert [stage.stack for stage in model.stages] == model.stacks


def test_stage_options_are_one_value_or_one_per_stage():
    model = ResNet(
        depth=5,
        base_width=4,
        scheme="heun",
        step=["1/depth", "1", "1/depth", "1"],
        gradient=["backprop", "checkpoint", "adjoint", "backprop"],
        anchor_every=[None, 2, 4, None],
    )
    assert [s.scheme for s in model.stacks] == ["heun"] * 4
    assert [s.step for s in model.stacks] == ["1/depth", "1", "1/depth", "1"]
    assert [s.gradient for s in model.stacks] == ["backprop", "checkpoint", "adjoint", "backprop"]
    assert [s.anchor_every for s in model.stacks] == [None, 2, 4, None]


def test_transition_blocks_change_the_shape_through_a_projection_shortcut():
    model = ResNet("resnet50", base_width=4)
    shapes = []
    x = torch.randn(2, 4, 16, 16)
    for stage in model.stages:
        x = stage.transition(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    basic = ResNet("resnet18", base_width=4)
    assert isinstance(basic.stages[0].transition.shortcut, torch.nn.Identity)  # 4 → 4 channels, stride 1
    assert isinstance(basic.stages[1].transition.shortcut, torch.nn.Sequential)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("scheme", ["euler", "heun"])
@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_every_parameter_gets_a_gradient(gradient, scheme, block):
    torch.manual_seed(0)
    model = ResNet(
        depth=[2, 3, 2, 3],
        block=block,
        base_width=4,
        scheme=scheme,
        gradient=gradient,
        tied=[False, False, True, True],
        zero_init_last_bn=False,  # f ≡ 0 would give its inner convolutions zero gradients
    )
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_init_makes_every_residual_function_zero():
    model = ResNet("resnet50", base_width=4).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for block in model.stacks[0].blocks:
            assert torch.equal(block(x), torch.zeros_like(x))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(depth=[2, 1, 2, 2]), "stage 2 has depth 1 but a stage's depth counts its blocks"),
        (dict(depth=4.0), "stage 1 has depth 4.0, a float, but a stage's depth counts its blocks"),
        (dict(step=0), "step=0 is not one of '1/depth', '1' or a positive number"),
        (dict(depth=[2, 2, 2]), "depth=[2, 2, 2] has 3 values"),
        (dict(tied=[True, False]), "tied=[True, False] has 2 values"),
        (dict(preset="resnet20"), "preset='resnet20' is not one of"),
        (dict(block="wide"), "block='wide' is not one of 'basic', 'bottleneck'"),
        (dict(stem="mnist"), "stem='mnist' is not one of 'cifar', 'imagenet'"),
        (dict(gradient=["backprop", "exact", "backprop", "backprop"]), "gradient='exact' is not one of"),
    ],
)
def test_bad_arguments_are_refused_by_name(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ResNet(base_width=4, **arguments)


def test_the_constructor_is_its_own_config_schema():
    """Plain typed arguments: a YAML builds the model (what the CLI will do)."""
    parser = ArgumentParser()
    parser.add_class_arguments(ResNet, "model")
    config = {
        "model": {
            "depth": [4, 4, 64, 4],
            "base_width": 4,
            "tied": [True, True, False, True],
            "gradient": ["backprop", "backprop", "adjoint", "backprop"],
        }
    }
    model = parser.instantiate(parser.parse_string(yaml.safe_dump(config))).model
    assert model.depth == [4, 4, 64, 4]
    assert [s.is_tied for s in model.stacks] == [True, True, False, True]
    assert model.stacks[2].gradient == "adjoint"


@pytest.mark.parametrize(("given", "step"), [("1/depth", "1/depth"), ("'1'", "1"), ("1", 1.0), ("0.5", 0.5)])
def test_step_is_one_over_depth_or_a_positive_number_in_yaml_and_on_the_command_line(given, step):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ResNet, "model")
    from_yaml = parser.instantiate(parser.parse_string(f"model:\n  base_width: 4\n  step: {given}\n")).model
    from_cli = parser.instantiate(parser.parse_args(["--model.base_width=4", f"--model.step={given.strip(chr(39))}"]))
    assert [s.step for s in from_yaml.stacks] == [step] * 4
    assert from_cli.model.stacks[0].h == from_yaml.stacks[0].h


@pytest.mark.parametrize("given", ["0", "-1"])
def test_a_step_that_is_not_positive_is_refused_from_yaml(given):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ResNet, "model")
    with pytest.raises(ValueError, match=f"step={float(given)!r} is not one of '1/depth', '1' or a positive number"):
        parser.instantiate(parser.parse_string(f"model:\n  base_width: 4\n  step: {given}\n"))


def test_simple_resnet_refuses_a_float_depth_by_name():
    with pytest.raises(ValueError, match="depth=4.0 is a float, but it counts the blocks of the residual stack"):
        SimpleResNet(depth=4.0)


def test_models_import_no_lightning():
    for path in (Path(__file__).parents[1] / "resnode_lightning" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] in ("lightning", "pytorch_lightning") for name in names), path


def test_models_read_no_files():
    """Weights come into the models as state dicts: reading checkpoint files is training/weights.py's."""
    for path in (Path(__file__).parents[1] / "resnode_lightning" / "models").glob("*.py"):
        calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
        names = {ast.unparse(call.func) for call in calls}
        assert not names & {"torch.load", "open", "load_file", "read_checkpoint"}, path


def test_stack_options_reach_each_stack_by_name_from_yaml():
    """``gradient: adjoint`` in a config → ResNet(gradient=...) → residual_stack(gradient=...) →
    ResidualStack(gradient=...), for every stack option, one value per stage."""
    parser = ArgumentParser()
    parser.add_class_arguments(ResNet, "model")
    options = {"scheme": "heun", "step": 0.5, "gradient": "adjoint", "anchor_every": 2, "tied": True}
    config = yaml.safe_dump({"model": {"depth": 3, "base_width": 4, **options}})
    model = parser.instantiate(parser.parse_string(config)).model
    for stack in model.stacks:
        assert (stack.scheme, stack.step, stack.gradient, stack.anchor_every, stack.is_tied) == tuple(options.values())


# -- the simple ResNet (Figure 4) -------------------------------------------------------------


def test_simple_resnet_downsamples_cifar_images_to_10x10_then_stacks_n_blocks():
    model = SimpleResNet(depth=8, width=16, scheme="heun", gradient="adjoint")
    x = torch.randn(2, 3, 32, 32)
    assert model.stem(x).shape == (2, 16, 10, 10)
    assert model.stack.depth == 8 and model.stack.h == 1 / 8 and model.stack.scheme == "heun"
    assert model(x).shape == (2, 10)


def test_simple_resnet_starts_as_the_identity_stack_where_the_adjoint_is_exact():
    torch.manual_seed(0)
    model = SimpleResNet(depth=4, width=4).double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    gradients = {}
    for gradient in ("backprop", "adjoint"):
        model.zero_grad()
        model.stack.gradient = gradient
        model(x).square().mean().backward()
        gradients[gradient] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.allclose(a, b) for a, b in zip(gradients["adjoint"], gradients["backprop"], strict=True))
    assert all(p.grad is not None for p in model.parameters())


# -- the linear ResNet (section 3.2, Figure 2) ------------------------------------------------


def linear_problem(dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A target B near the identity (small initial loss, Assumption 1) and a covariance Σ."""
    generator = torch.Generator().manual_seed(0)
    target = torch.eye(dim, dtype=torch.float64) + 0.4 * torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    covariance = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    return target, covariance


@pytest.fixture(scope="module")
def trained_linear_weights() -> dict[int, torch.Tensor]:
    """θ after the same gradient-flow time t = 10 for depths N = 8, 16, 32."""
    target, covariance = linear_problem()
    return {
        depth: train_by_gradient_flow(
            LinearResNet(3, depth).double(), target, covariance, learning_rate=0.05, steps=200
        )
        for depth in (8, 16, 32)
    }


def test_linear_resnet_applies_the_product_of_its_layers():
    model = LinearResNet(2, 3).double()
    with torch.no_grad():
        for block in model.stack.blocks:
            block.theta.normal_()
    identity = torch.eye(2, dtype=torch.float64)
    expected = identity
    for theta in model.weights:
        expected = (identity + theta / 3) @ expected
    assert torch.allclose(model.product(), expected)
    x = torch.randn(5, 2, dtype=torch.float64)
    assert torch.allclose(model(x), x @ expected.T)


def test_gradient_flow_factorises_the_target():
    target, covariance = linear_problem()
    model = LinearResNet(3, 16).double()
    initial = factorisation_loss(model.product(), target, covariance).item()
    train_by_gradient_flow(model, target, covariance, learning_rate=0.05, steps=200)
    assert factorisation_loss(model.product(), target, covariance).item() < 1e-5 * initial


def test_trained_weights_are_lipschitz_in_depth_with_steps_in_one_over_n(trained_linear_weights):
    """Prop. 2: max_n ‖θ_{n+1} − θ_n‖ = O(1/N), so N · max_n ‖θ_{n+1} − θ_n‖ stays put."""
    scaled = [
        depth * (weights[1:] - weights[:-1]).flatten(1).norm(dim=1).max().item()
        for depth, weights in trained_linear_weights.items()
    ]
    assert scaled[0] > 0.1
    assert max(scaled) / min(scaled) < 1.05


def test_trained_weights_converge_to_a_function_of_depth_at_rate_one_over_n(trained_linear_weights):
    """Th. 1: sup_s ‖θ^N(s) − θ^{2N}(s)‖ halves when N doubles."""
    on_grid = {depth: weights_in_depth(weights, 32) for depth, weights in trained_linear_weights.items()}
    gap_8 = (on_grid[8] - on_grid[16]).flatten(1).norm(dim=1).max()
    gap_16 = (on_grid[16] - on_grid[32]).flatten(1).norm(dim=1).max()
    assert 1.6 < gap_8 / gap_16 < 2.5


# -- the 1-D ResNet (Figure 1) ----------------------------------------------------------------


@pytest.mark.parametrize(("sign", "crossing"), [(1, False), (-1, True)])
def test_a_deep_1d_resnet_learns_minus_x_only_by_crossing_trajectories(sign, crossing):
    """An ODE flow keeps the order of its inputs: learning x ↦ x gives ordered trajectories; a
    ResNet can still learn x ↦ −x, but only with trajectories that cross."""
    torch.manual_seed(0)
    model = ScalarResNet(depth=8, width=8).double()
    x = torch.linspace(-1, 1, 21, dtype=torch.float64)[:, None]
    loss = fit_scalar_map(model, lambda x: sign * x, x, learning_rate=0.03, steps=300)
    with torch.no_grad():
        trajectory = model.trajectory(x)
        assert torch.allclose(trajectory[-1], model(x)[:, 0])
    assert loss < 1e-3
    assert trajectories_cross(trajectory) == crossing
