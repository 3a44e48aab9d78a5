"""ResidualStack: one function, three ways to differentiate it, and clear errors."""

import pytest
import torch
from stacks import conv_block, gradients, random_blocks, smooth_blocks, stack_of, tanh_block
from torch import nn

from resnode_lightning.numerics import ResidualStack


@pytest.mark.parametrize("scheme", ["euler", "heun"])
@pytest.mark.parametrize("tied", [False, True])
def test_forward_is_identical_in_every_gradient_mode(scheme, tied):
    blocks = random_blocks(conv_block, 6)
    stack = stack_of([blocks[0]] * 6 if tied else blocks, scheme=scheme)
    x = torch.randn(4, 4, 5, 5, dtype=torch.float64)
    outputs = [gradients(stack, x, mode)[0] for mode in ("backprop", "checkpoint", "adjoint")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    with torch.no_grad():
        assert torch.equal(stack(x), outputs[0])


def test_gradient_mode_can_change_between_steps():
    stack = stack_of(random_blocks(tanh_block, 8))
    x = torch.randn(3, 6, dtype=torch.float64)
    backprop = gradients(stack, x, "backprop")[2]
    stack.gradient = "adjoint"
    adjoint = gradients(stack, x, stack.gradient)[2]
    assert not all(torch.equal(a, b) for a, b in zip(adjoint, backprop))
    stack.gradient = "backprop"
    assert all(torch.equal(a, b) for a, b in zip(gradients(stack, x, stack.gradient)[2], backprop))


@pytest.mark.parametrize(("step", "h"), [("1/depth", 1 / 8), ("1", 1.0), (1, 1.0), (0.25, 0.25)])
def test_step_size_is_one_over_depth_one_or_a_given_positive_number(step, h):
    assert ResidualStack(random_blocks(tanh_block, 8), step=step).h == h


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResidualStack([]), "depth >= 1"),
        (lambda: ResidualStack.tied(nn.Identity(), 0), "depth=0, but it counts the steps of the stack"),
        (lambda: ResidualStack.tied(nn.Identity(), 4.0), "depth=4.0 is a float, but it counts the steps"),
        (lambda: ResidualStack([nn.Identity()]).deepen(2.5), "depth=2.5 is a float"),
        (lambda: ResidualStack([nn.Identity()], scheme="rk4"), "scheme='rk4' is not one of 'euler', 'heun'"),
        (lambda: ResidualStack([nn.Identity()], gradient="exact"), "gradient='exact' is not one of"),
        (lambda: ResidualStack([nn.Identity()], step="0.5"), "step='0.5' is not one of '1/depth', '1' or a positive"),
        (lambda: ResidualStack([nn.Identity()], step=0), "step=0 is not one of"),
        (lambda: ResidualStack([nn.Identity()], step=-1.0), "step=-1.0 is not one of"),
        (lambda: ResidualStack([nn.Identity()], step=True), "step=True is not one of"),
        (lambda: ResidualStack([nn.Identity()], anchor_every=0), "anchor_every=0, but it counts the steps between"),
    ],
)
def test_bad_arguments_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_a_shape_changing_residual_function_is_refused(gradient):
    stack = ResidualStack([nn.Identity(), nn.Conv2d(4, 8, 1)], gradient=gradient)
    with pytest.raises(ValueError, match=r"residual function 1 \(Conv2d\) maps a tensor of shape"):
        stack(torch.randn(2, 4, 3, 3))


def test_a_broadcasting_residual_function_is_refused():
    """x + h f(x) would broadcast an output of shape (B, C, 1, 1) silently."""
    stack = ResidualStack([nn.AdaptiveAvgPool2d(1)])
    with pytest.raises(ValueError, match="needs f\\(x\\) with the shape of x"):
        stack(torch.randn(2, 4, 3, 3))


def test_tied_stack_shares_one_module_and_untie_copies_it():
    block = tanh_block()
    stack = ResidualStack.tied(block, 5)
    assert stack.is_tied and len(list(stack.parameters())) == 4
    x = torch.randn(3, 6)
    before = stack(x)
    stack.untie()
    assert not stack.is_tied and len(list(stack.parameters())) == 20
    assert torch.equal(stack(x), before)


def test_deepening_takes_block_floor_of_i_n_over_m():
    stack = stack_of(random_blocks(tanh_block, 4))
    deep = stack_of(random_blocks(tanh_block, 4)).deepen(10)
    assert deep.depth == 10 and not deep.is_tied
    for i, block in enumerate(deep.blocks):
        assert torch.equal(block[0].weight, stack.blocks[i * 4 // 10][0].weight)
        assert block is not stack.blocks[i * 4 // 10]


@pytest.mark.parametrize(("tied", "interpolation"), [(True, "constant"), (False, "constant"), (False, "linear")])
def test_deepened_stacks_converge_at_rate_one_over_depth(tied, interpolation):
    """With h = 1/M the deepened stack is an Euler discretisation of one ODE (θ(s) piecewise
    constant or linear in depth): its output moves by O(1/M) and converges as M grows."""
    blocks = random_blocks(tanh_block, 4)
    x = torch.randn(5, 6, dtype=torch.float64)
    outputs = {}
    for m in (16, 32, 64, 4096):
        stack = stack_of([blocks[0]] * 4 if tied else blocks).deepen(m, interpolation)
        assert stack.is_tied == tied
        outputs[m] = stack(x)
    errors = [(outputs[m] - outputs[4096]).abs().max().item() for m in (16, 32, 64)]
    assert errors[0] / errors[1] == pytest.approx(2, rel=0.2), errors
    assert errors[1] / errors[2] == pytest.approx(2, rel=0.2), errors


def test_untie_copies_only_repeated_modules():
    blocks = random_blocks(tanh_block, 3)
    stack = ResidualStack(blocks).untie()
    assert all(a is b for a, b in zip(stack.blocks, blocks))
    tied = ResidualStack.tied(blocks[0], 3).untie()
    assert tied.blocks[0] is blocks[0] and len({id(b) for b in tied.blocks}) == 3


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_states_are_the_trajectory_that_ends_in_the_output(scheme):
    stack = ResidualStack(random_blocks(tanh_block, 5), scheme=scheme)
    x = torch.randn(3, 6)
    states = stack.states(x)
    assert states.shape == (6, 3, 6)
    assert torch.equal(states[0], x) and torch.equal(states[-1], stack(x))


def test_states_leave_batchnorm_running_statistics_alone():
    stack = stack_of(random_blocks(conv_block, 3)).train()
    before = {name: b.clone() for name, b in stack.named_buffers()}
    stack.states(torch.randn(4, 4, 5, 5, dtype=torch.float64))
    assert all(torch.equal(b, before[name]) for name, b in stack.named_buffers())


def reconstruction_error(stack: ResidualStack, x: torch.Tensor) -> float:
    return ((stack.reconstruct_input(stack(x)) - x).norm() / x.norm()).item()


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_the_input_is_rebuilt_exactly_when_the_residual_is_zero_and_statistics_stay(scheme):
    stack = stack_of(random_blocks(lambda: conv_block(zero_init_last_bn=True), 4), scheme=scheme).train()
    x = torch.randn(4, 4, 5, 5, dtype=torch.float64)
    output = stack(x)
    before = {name: b.clone() for name, b in stack.named_buffers()}
    assert torch.equal(stack.reconstruct_input(output), x)
    assert all(torch.equal(b, before[name]) for name, b in stack.named_buffers())


def test_one_reversed_euler_step_of_a_linear_residual_is_off_by_h_squared_a_squared():
    """x_1 = (I + hA) x_0, x̃_0 = (I − hA) x_1 = x_0 − h² A² x_0."""
    f = nn.Linear(3, 3, bias=False).double()
    stack = ResidualStack([f], step=0.5)
    x = torch.randn(2, 3, dtype=torch.float64)
    a = f.weight.detach()
    expected = x - 0.25 * x @ (a @ a).T
    torch.testing.assert_close(stack.reconstruct_input(stack(x)), expected)


def test_the_rebuilt_input_converges_with_depth_like_one_over_depth_for_euler_faster_for_heun():
    x = torch.randn(8, 6, dtype=torch.float64)
    euler = [reconstruction_error(stack_of(smooth_blocks(tanh_block, n)), x) for n in (8, 16, 32)]
    heun = [reconstruction_error(stack_of(smooth_blocks(tanh_block, n), scheme="heun"), x) for n in (8, 16, 32)]
    assert all(1.6 < coarse / fine < 2.5 for coarse, fine in zip(euler, euler[1:])), euler
    assert all(h < e / 10 for h, e in zip(heun, euler)), (euler, heun)


def test_anchors_beyond_the_depth_warn_that_only_the_input_is_stored():
    with pytest.warns(UserWarning, match="anchor_every=8 is larger than the stack's depth N = 4: .* x_0 only"):
        ResidualStack(random_blocks(tanh_block, 4), anchor_every=8)
    stack = ResidualStack(random_blocks(tanh_block, 8), anchor_every=8)
    with pytest.warns(UserWarning, match="anchor_every=8 is larger than the stack's depth N = 2"):
        stack.deepen(2)


@pytest.mark.parametrize("step", ["1", 0.5])
def test_deepening_with_a_fixed_step_warns_that_the_function_changes(step):
    stack = ResidualStack(random_blocks(tanh_block, 4), step=step)
    with pytest.warns(UserWarning, match=f"step={step!r} from N = 4 to 8: h stays"):
        stack.deepen(8)
