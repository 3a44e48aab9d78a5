"""The adjoint on a CUDA device: same claims as on the CPU, plus measured device memory.

Skipped where no CUDA device is present (these are not run by CI on the 2-core CPU machines)."""

import pytest
import torch
from stacks import conv_block, random_blocks, relative_error

from resnode_lightning.numerics import ResidualStack

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def step(stack: ResidualStack, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().requires_grad_(True)
    (stack(x) ** 2).mean().backward()
    grads = [p.grad.clone() for p in stack.parameters()]
    stack.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_adjoint_matches_backprop_on_cuda(scheme):
    stacks = {mode: ResidualStack(random_blocks(lambda: conv_block(16), 32), scheme=scheme, gradient=mode).cuda()
              for mode in ("backprop", "adjoint")}
    x = torch.randn(32, 16, 10, 10, device="cuda")
    grads = {mode: step(stack, x) for mode, stack in stacks.items()}
    assert relative_error(grads["adjoint"], grads["backprop"]) < 0.05
    for b, r in zip(stacks["adjoint"].buffers(), stacks["backprop"].buffers()):
        assert torch.allclose(b.float(), r.float(), rtol=1e-5, atol=1e-6)


def peak_step_bytes(depth: int, gradient: str) -> int:
    stack = ResidualStack(random_blocks(lambda: conv_block(16), depth), gradient=gradient).cuda()
    x = torch.randn(128, 16, 10, 10, device="cuda")
    step(stack, x)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step(stack, x)
    gradients = sum(p.numel() * p.element_size() for p in stack.parameters())
    return torch.cuda.max_memory_allocated() - before - 2 * gradients  # .grad and its clone


def test_adjoint_device_memory_is_flat_in_depth_and_backprops_is_not():
    adjoint = [peak_step_bytes(n, "adjoint") for n in (8, 128)]
    backprop = [peak_step_bytes(n, "backprop") for n in (8, 128)]
    assert adjoint[1] <= 1.2 * adjoint[0]
    assert backprop[1] > 10 * backprop[0]
    assert adjoint[1] < 0.05 * backprop[1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_on_cuda_keeps_the_stream_in_float32(dtype):
    stack = ResidualStack(random_blocks(lambda: conv_block(16), 16), gradient="adjoint").cuda()
    x = torch.randn(32, 16, 10, 10, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        out = stack(x)
    assert out.dtype == torch.float32
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in stack.parameters())


def test_random_blocks_are_replayed_on_cuda():
    """The CUDA generator's state is recorded and replayed: every step anchored is exact."""
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Dropout(0.3)) for _ in range(8)]
    stacks = {mode: ResidualStack(blocks, gradient=mode, anchor_every=1).cuda().double()
              for mode in ("backprop", "adjoint")}
    x = torch.randn(32, 16, device="cuda", dtype=torch.float64)
    grads = {}
    for mode, stack in stacks.items():
        torch.cuda.manual_seed(3)
        grads[mode] = step(stack, x)
    assert relative_error(grads["adjoint"], grads["backprop"]) < 1e-12


def test_the_data_set_lives_on_the_gpu_and_batches_are_gathered_and_augmented_there():
    from types import SimpleNamespace

    from resnode_lightning.data import DigitsDataModule

    data = DigitsDataModule(batch_size=32, augment=True)
    data.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1, current_epoch=0,
                                   strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch[0].is_cuda and batch[1].is_cuda
    images, _ = data.on_after_batch_transfer(batch, 0)
    assert images.is_cuda and images.dtype == torch.float32
