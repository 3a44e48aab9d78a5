"""The memory-free adjoint: the claims of docs/method.md, checked against plain backprop in float64."""

import math

import pytest
import torch
from stacks import (
    conv_block,
    gradients,
    parameter_error,
    random_blocks,
    relative_error,
    smooth_blocks,
    stack_of,
    tanh_block,
)
from torch import nn
from torchvision.ops import StochasticDepth

from resnode_lightning.numerics import ResidualStack

SCHEMES = ["euler", "heun"]


def vectors(batch: int = 8, width: int = 6) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, width, dtype=torch.float64)


def images(batch: int = 8, channels: int = 4, size: int = 5) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, channels, size, size, dtype=torch.float64)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("tied", [False, True])
def test_adjoint_is_exact_when_the_residual_is_zero(scheme, tied):
    """Zero-initialised last BatchNorm: f ≡ 0, the reversal is exact, gradients equal backprop's
    (including those of the inner convolutions and BN, which see train-mode batch statistics)."""
    blocks = random_blocks(lambda: conv_block(zero_init_last_bn=True), 6)
    stack = stack_of([blocks[0]] * 6 if tied else blocks, scheme=scheme)
    out_bp, dx_bp, dp_bp, _ = gradients(stack, images(), "backprop")
    out_adj, dx_adj, dp_adj, _ = gradients(stack, images(), "adjoint")
    assert torch.equal(out_adj, out_bp)
    assert torch.allclose(dx_adj, dx_bp, rtol=1e-10, atol=1e-14)
    for g, r in zip(dp_adj, dp_bp):
        assert torch.allclose(g, r, rtol=1e-9, atol=1e-14)
    assert relative_error(dp_adj, dp_bp) < 1e-10


def test_euler_error_falls_like_one_over_depth():
    depths = [8, 16, 32, 64]
    errors = [parameter_error(stack_of(smooth_blocks(tanh_block, n)), vectors()) for n in depths]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(0.7 < r < 1.5 for r in rates), (errors, rates)


def test_error_falls_with_depth_for_batchnorm_blocks():
    for scheme in SCHEMES:
        errors = [parameter_error(stack_of(random_blocks(conv_block, n), scheme=scheme), images())
                  for n in (8, 64)]
        assert errors[1] < errors[0] / 4, (scheme, errors)


@pytest.mark.parametrize("depth", [8, 32])
def test_heun_beats_euler_when_weights_are_smooth_in_depth(depth):
    blocks = smooth_blocks(tanh_block, depth)
    euler = parameter_error(stack_of(blocks, scheme="euler"), vectors())
    heun = parameter_error(stack_of(blocks, scheme="heun"), vectors())
    assert heun < euler / 30, (euler, heun)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tied_weights_get_the_sum_over_all_steps(scheme):
    """The reference code returned one step's share (1/N of the gradient); here the tied
    gradient matches backprop's to the method's accuracy, and its norm is not 1/N of it."""
    torch.manual_seed(0)
    stack = stack_of([tanh_block()] * 32, scheme=scheme)
    _, _, reference, _ = gradients(stack, vectors(), "backprop")
    _, _, adjoint, _ = gradients(stack, vectors(), "adjoint")
    assert relative_error(adjoint, reference) < 1e-2
    norms = [torch.cat([g.flatten() for g in gs]).norm() for gs in (adjoint, reference)]
    assert norms[0] / norms[1] == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("tied", [False, True])
def test_checkpoint_gradients_equal_backprop(scheme, tied):
    blocks = random_blocks(conv_block, 7)
    stack = stack_of([blocks[0]] * 7 if tied else blocks, scheme=scheme)
    out_bp, dx_bp, dp_bp, _ = gradients(stack, images(), "backprop")
    out_ck, dx_ck, dp_ck, _ = gradients(stack, images(), "checkpoint")
    assert torch.equal(out_ck, out_bp)
    assert torch.allclose(dx_ck, dx_bp, rtol=1e-12, atol=1e-15)
    assert relative_error(dp_ck, dp_bp) < 1e-12


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("tied", [False, True])
def test_anchors_lower_the_error_and_every_step_anchored_is_exact(scheme, tied):
    """Restarting the reconstruction from a stored state every k steps: the error grows with k
    and vanishes at k = 1 (also where tied weights reuse the recompute to rebuild)."""
    blocks = random_blocks(conv_block, 16)
    stack = stack_of([blocks[0]] * 16 if tied else blocks, scheme=scheme)
    x = images()
    errors = [parameter_error(stack, x, anchor_every=k) for k in (1, 2, 4, 8, None)]
    assert errors[0] < 1e-10
    assert all(a < b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("tied", [False, True])
def test_running_statistics_match_backprop_after_one_step(mode, scheme, tied):
    """One forward + backward moves BatchNorm's running mean/var and num_batches_tracked exactly
    as backprop does, and every module leaves backward in the mode it entered."""
    blocks = random_blocks(conv_block, 5)
    stack = stack_of([blocks[0]] * 5 if tied else blocks, scheme=scheme)
    if not tied:
        stack.blocks[2].eval()  # a frozen-statistics block among training ones
    modes = [m.training for m in stack.modules()]
    _, _, _, after_bp = gradients(stack, images(), "backprop")
    _, _, _, after = gradients(stack, images(), mode)
    for (name, b), (_, r) in zip(after.named_buffers(), after_bp.named_buffers()):
        assert torch.equal(b, r), name
    assert [m.training for m in after.modules()] == modes
    assert [m.training for m in after_bp.modules()] == modes


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("anchor_every", [None, 3])
def test_frozen_parameters_get_no_gradient_and_no_backward_work(scheme, anchor_every):
    """With the input frozen too, the reverse sweep stops at the lowest trainable block: frozen
    blocks below it are never evaluated during backward, and the trainable gradients are
    exactly those of a full sweep."""
    stack = stack_of(random_blocks(tanh_block, 8), scheme=scheme, gradient="adjoint", anchor_every=anchor_every)
    for block in stack.blocks[:5]:
        block.requires_grad_(False)
    _, _, full, _ = gradients(stack, vectors(), "adjoint")  # input requires grad: the whole sweep
    calls = [0] * 8
    for i, block in enumerate(stack.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    out = stack(vectors())
    calls[:] = [0] * 8
    (out**2).mean().backward()
    lowest = 4 if scheme == "heun" else 5  # Heun's step 4 also evaluates f_5, which is trainable
    assert calls[:lowest] == [0] * lowest and all(c > 0 for c in calls[lowest:])
    assert all(p.grad is None for b in stack.blocks[:5] for p in b.parameters())
    trainable = [p.grad for b in stack.blocks[5:] for p in b.parameters()]
    assert all(torch.equal(g, r) for g, r in zip(trainable, [g for g in full if g is not None]))


def test_input_gradient_only_when_the_input_needs_one():
    stack = stack_of(random_blocks(tanh_block, 4), gradient="adjoint")
    x = vectors()
    (stack(x) ** 2).sum().backward()
    assert x.grad is None and all(p.grad is not None for p in stack.parameters())


def count_backward_evaluations(stack: ResidualStack, x: torch.Tensor) -> int:
    calls = []
    for block in dict.fromkeys(stack.blocks):
        block.register_forward_hook(lambda *_: calls.append(1))
    out = stack(x.requires_grad_(True))
    calls.clear()
    out.sum().backward()
    return len(calls)


@pytest.mark.parametrize(
    ("scheme", "tied", "evaluations"),
    [("euler", False, lambda n: 2 * n), ("euler", True, lambda n: n + 1),
     ("heun", False, lambda n: 3 * n + 1), ("heun", True, lambda n: 3 * n + 1)],
)
def test_backward_reuses_the_recompute_to_rebuild(scheme, tied, evaluations):
    """Euler: a rebuild and a recompute per step, but with tied weights the recompute f(x̃_n)
    is the rebuild of x̃_{n−1}. Heun: the recompute's f_n(x̃_n) is the first rebuild evaluation
    of step n − 1, so three evaluations per step instead of four."""
    n = 10
    blocks = random_blocks(tanh_block, n)
    stack = stack_of([blocks[0]] * n if tied else blocks, scheme=scheme, gradient="adjoint")
    assert count_backward_evaluations(stack, vectors()) == evaluations(n)


def saved_activation_bytes(stack: ResidualStack, x: torch.Tensor) -> int:
    """Bytes the autograd graph keeps for backward, parameters (stored anyway) excluded."""
    parameters = {p.data_ptr() for p in stack.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in parameters:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stack(x.requires_grad_(True))
    return total


@pytest.mark.parametrize("tied", [False, True])
def test_adjoint_graph_memory_does_not_grow_with_depth(tied):
    saved = {}
    for mode in ("adjoint", "backprop"):
        for depth in (4, 32):
            blocks = random_blocks(conv_block, depth)
            stack = stack_of([blocks[0]] * depth if tied else blocks, gradient=mode)
            saved[mode, depth] = saved_activation_bytes(stack, images())
    assert saved["adjoint", 32] == saved["adjoint", 4] == images().numel() * 8
    assert saved["backprop", 32] / saved["backprop", 4] == pytest.approx(8, rel=0.05)


def test_anchors_store_one_state_per_segment():
    stack = stack_of(random_blocks(conv_block, 16), gradient="adjoint", anchor_every=4)
    assert saved_activation_bytes(stack, images()) == (1 + 4) * images().numel() * 8


@pytest.mark.parametrize("scheme", SCHEMES)
def test_autocast_is_replayed_in_backward_and_the_stream_keeps_its_dtype(scheme):
    autocast_seen = []

    class Probe(nn.Module):
        def forward(self, x):
            autocast_seen.append(torch.is_autocast_enabled("cpu"))
            return x * 0

    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)) for _ in range(8)]
    stacks = {mode: ResidualStack(blocks, scheme=scheme, gradient=mode) for mode in ("backprop", "adjoint")}
    x = torch.randn(16, 8)
    grads = {}
    for mode, stack in stacks.items():
        stack.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = stack(x)
        assert out.dtype == torch.float32
        (out.float() ** 2).mean().backward()  # backward outside the autocast region
        grads[mode] = [p.grad.clone() for p in stack.parameters()]
        assert all(p.grad.dtype == torch.float32 for p in stack.parameters())
    assert relative_error(grads["adjoint"], grads["backprop"]) < 0.05

    probe = ResidualStack([nn.Sequential(Probe()), nn.Linear(8, 8)], scheme=scheme, gradient="adjoint")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = probe(x.requires_grad_(True))
    autocast_seen.clear()
    out.sum().backward()
    assert autocast_seen and all(autocast_seen)


def test_float32_matches_float64_to_rounding():
    blocks = random_blocks(tanh_block, 16)
    x = vectors()
    e64 = parameter_error(stack_of(blocks), x)
    e32 = parameter_error(ResidualStack(blocks).float(), x.float())
    assert e32 == pytest.approx(e64, rel=0.02)


def test_a_parameter_the_block_does_not_use_gets_no_gradient_as_in_backprop():
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            return torch.tanh(self.used(x))

    stack = stack_of(random_blocks(WithSpare, 4))
    _, _, reference, _ = gradients(stack, vectors(), "backprop")
    _, _, adjoint, _ = gradients(stack, vectors(), "adjoint")
    assert [g is None for g in adjoint] == [g is None for g in reference]
    assert relative_error([g for g in adjoint if g is not None], [g for g in reference if g is not None]) < 0.05


@pytest.mark.parametrize("loss", ["quadratic", "linear"])
def test_a_second_derivative_through_the_adjoint_is_refused_naming_the_fix(loss):
    """A gradient penalty needs the adjoint's backward to be differentiable, which it is not;
    with a loss linear in the output nothing else would fail and the penalty would be dropped."""
    stack = stack_of(random_blocks(tanh_block, 3), gradient="adjoint")
    x = vectors().requires_grad_(True)
    out = stack(x)
    objective = out.square().sum() if loss == "quadratic" else out.sum()
    with pytest.raises(RuntimeError, match="second derivative .* gradient='adjoint'.* gradient='backprop' or"):
        torch.autograd.grad(objective, x, create_graph=True)


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_weights_changed_in_place_before_backward_are_refused_as_in_backprop(mode):
    stack = stack_of(random_blocks(tanh_block, 3), gradient=mode)
    loss = stack(vectors().requires_grad_(True)).square().sum()
    with torch.no_grad():
        stack.blocks[1][0].weight.add_(1.0)  # e.g. optimizer.step() before loss.backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


class Borrowing(nn.Module):
    """A block that uses a parameter it does not register: passed in, or a module held in a plain list."""

    def __init__(self, borrowed: nn.Parameter | None = None, module: nn.Module | None = None):
        super().__init__()
        self.own = nn.Linear(6, 6)
        self.borrowed = [borrowed, module]  # a plain list: not registered

    def forward(self, x):
        borrowed, module = self.borrowed
        y = self.own(x)
        return torch.tanh(y * borrowed if module is None else module(y))


@pytest.mark.parametrize("borrow", ["parameter", "module"])
def test_a_parameter_the_block_uses_but_does_not_own_is_refused(borrow):
    """Backprop gives it a gradient; the adjoint, which differentiates only the blocks' own
    parameters, would give it none: refused."""
    torch.manual_seed(0)
    outside = nn.Parameter(torch.ones(6)) if borrow == "parameter" else None
    shared = nn.Linear(6, 6) if borrow == "module" else None
    stack = stack_of([Borrowing(outside, shared) for _ in range(3)], gradient="adjoint")
    if shared is not None:
        shared.double()
    loss = stack(vectors()).square().sum()
    with pytest.raises(RuntimeError, match=r"step 2 .* uses a tensor of shape \(6,?.*\) that requires grad but is not"):
        loss.backward()


def random_block(draw: str) -> nn.Module:
    """A smooth block followed by a draw from the default generator in training mode."""
    layers = {
        "StochasticDepth": lambda: StochasticDepth(0.5, "row"),
        "Dropout": lambda: nn.Dropout(0.3),
        "F.dropout": lambda: FunctionalDropout(),
    }
    return nn.Sequential(*tanh_block(), layers[draw]())


class FunctionalDropout(nn.Module):
    def forward(self, x):
        return nn.functional.dropout(x, 0.3, training=True)


def seeded_gradients(stack, gradient, **options):
    torch.manual_seed(7)  # the same masks in every mode
    return gradients(stack, vectors(), gradient, **options)


@pytest.mark.parametrize("draw", ["StochasticDepth", "Dropout", "F.dropout"])
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("tied", [False, True])
def test_random_blocks_are_replayed_so_that_anchor_every_1_and_checkpoint_are_exact(draw, scheme, tied):
    """The random numbers each evaluation drew in the forward are drawn again in backward, as
    checkpointing does: every step anchored is exact, and without anchors the rebuild sees the
    forward's masks (errors of the deterministic method, not of a different function)."""
    blocks = random_blocks(lambda: random_block(draw), 8)
    stack = stack_of([blocks[0]] * 8 if tied else blocks, scheme=scheme)
    _, dx_bp, dp_bp, _ = seeded_gradients(stack, "backprop")
    for mode, options, tolerance in [("checkpoint", {}, 1e-12), ("adjoint", {"anchor_every": 1}, 1e-12),
                                     ("adjoint", {}, 0.02)]:
        _, dx, dp, _ = seeded_gradients(stack, mode, **options)
        assert relative_error([dx, *dp], [dx_bp, *dp_bp]) < tolerance, (mode, options)


def test_backward_draws_no_random_numbers_and_deterministic_stacks_record_none():
    stack = stack_of(random_blocks(lambda: random_block("Dropout"), 4), gradient="adjoint")
    x = vectors().requires_grad_(True)
    out = stack(x)
    after_forward = torch.get_rng_state()
    out.sum().backward()
    assert torch.equal(torch.get_rng_state(), after_forward)
    assert len(out.grad_fn.replay.states) == 4
    deterministic = stack_of(random_blocks(tanh_block, 4), gradient="adjoint")
    assert not deterministic(x).grad_fn.replay.states


@pytest.mark.parametrize("scheme", SCHEMES)
def test_parameters_sharing_one_gradient_tensor_are_summed_separately(scheme):
    """f = p + q hands both parameters the same gradient tensor; tied over 4 steps each must get
    the sum of its own contributions (an in-place sum would add q's into p's)."""

    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.p, self.q = nn.Parameter(torch.zeros(6)), nn.Parameter(torch.zeros(6))

        def forward(self, x):
            return self.p + self.q + 0 * x

    stack = stack_of([Shift()] * 4, scheme=scheme)
    _, _, reference, _ = gradients(stack, vectors(), "backprop")
    _, _, adjoint, _ = gradients(stack, vectors(), "adjoint")
    assert all(torch.allclose(g, r) for g, r in zip(adjoint, reference))


def test_a_device_without_generator_state_is_refused():
    """Random numbers drawn there could not be replayed (nor detected): refused by name."""
    stack = ResidualStack([nn.Linear(6, 6, device="meta")], gradient="adjoint")
    with pytest.raises(RuntimeError, match="device type 'meta' has none .* gradient='checkpoint' or 'backprop'"):
        stack(torch.randn(2, 6, device="meta", requires_grad=True))


def test_a_borrowed_parameter_in_a_frozen_stage_at_the_lowest_step_is_refused_too():
    """Heun's step 0 evaluates a frozen block 0 and a trainable block 1; with an input that needs no
    gradient, block 0's stage has nothing to differentiate, but its graph still reaches a tensor
    from outside that requires grad: refused, not skipped."""
    torch.manual_seed(0)
    outside = nn.Parameter(torch.ones(6, dtype=torch.float64))
    frozen = Borrowing(outside, None).requires_grad_(False)
    blocks = [frozen, nn.Sequential(nn.Linear(6, 6), nn.Tanh()), nn.Sequential(nn.Linear(6, 6), nn.Tanh())]
    stack = stack_of(blocks, scheme="heun", gradient="adjoint")
    loss = stack(vectors()).square().sum()
    with pytest.raises(RuntimeError, match=r"step 0 .* uses a tensor of shape \(6,?\) that requires grad but is not"):
        loss.backward()
