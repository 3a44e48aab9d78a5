"""`make device-check`: what matters on a CUDA GPU, checked and measured in one command.

Prepared so that a GPU lent for minutes needs nothing written: one call of at most 8 minutes on
one GPU, which writes one JSON file (after every section, so that a run cut short keeps what it
measured) and prints one table. Sections:

1. ``cuda_tests``: the suite's CUDA tests (tests/test_cuda.py, the CUDA test of test_data.py, and
   with 2 GPUs or more the SyncBatchNorm test of test_ddp.py), their summary line.
2. ``stage3``: a ResNet-101-shaped stage 3 (pre-activation bottleneck blocks of 1024 channels on
   CIFAR-sized 8x8 maps, batch 128) at depth 23, 92 and 368 with backprop, checkpoint and the
   adjoint (Euler and Heun), side by side in one process: peak ``torch.cuda.max_memory_allocated``
   of a training step above the weights, step time by CUDA events, ratios to backprop.
3. ``deepest_under_16gib``: memory capped at a V100's 16 GiB
   (``torch.cuda.set_per_process_memory_fraction``): the deepest stage 3 (depths 23 · 2^k, then
   halfway between the last that fits and the first that does not) that still trains at batch
   128 with backprop, checkpoint and the adjoint, and images/s at that depth.
4. ``fp16_adjoint``: 50 steps of ``16-mixed`` (float16 autocast, dynamic loss scaling) through the
   adjoint with Lightning: every step whose gradients were not finite was skipped (the weights
   stay finite), and the gradient error of one float16 adjoint step against float32 backprop on
   the same batch.
5. ``random_replay``: dropout and stochastic depth under the adjoint with an anchor every step
   give exactly backprop's gradients (float64, the device's generator replayed).
6. ``fit``: ``resnode fit --config cifar_adjoint.yaml`` for 200 steps on CIFAR-10 (``--cifar-root``,
   default .cache/cifar10-jpg, which ``make device-check`` unpacks from the shared copy): images/s
   and the share of the training loop's time spent waiting for the next batch (Lightning's
   SimpleProfiler).
7. ``imagenet_decode``: ImageNet batches (224 random resized crops of 500x375 JPEGs, generated)
   decoded in DataLoader workers against decoded on the GPU in batches (``--data.decode device``):
   images/s of each.

``--device cpu --quick`` runs the same code on the CPU at toy sizes in well under a minute; the
test suite runs it (tests/test_device_check.py), so that the script cannot rot before a GPU comes.
On the CPU the 16 GiB cap of section 3 becomes a cap on the bytes autograd saves for the
backward (a CPU process has no allocator limit to hit), and fp16 becomes bf16 (CPU autocast).

Usage: python benchmarks/device_check.py [--device cuda|cpu] [--quick] [--out PATH] [--cifar-root PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

REPOSITORY = Path(__file__).resolve().parents[1]
V100_BYTES = 16 * 2**30
MODES = [("backprop", "euler"), ("checkpoint", "euler"), ("adjoint", "euler"), ("adjoint", "heun")]
MEMORY_MEASURE = {
    "cuda": "torch.cuda.max_memory_allocated during a training step, above the memory held before it",
    "cpu": "bytes autograd saves for the backward in the forward pass (no allocator peak on a CPU)",
}


class Sizes:
    """What each section runs: the paper's sizes on a GPU, toy ones with ``--quick``."""

    def __init__(self, quick: bool) -> None:
        self.channels, self.maps, self.batch = (64, 4, 8) if quick else (1024, 8, 128)
        self.depths = [2, 4, 8] if quick else [23, 92, 368]
        self.search = [2, 4, 8, 16] if quick else [23 * 2**k for k in range(8)]  # up to 2944
        self.cap_bytes = 2 * 2**20 if quick else V100_BYTES
        self.timed_steps = 1 if quick else 3
        self.fp16_steps = 5 if quick else 50
        self.fit_steps, self.fit_depth, self.fit_batch = (3, 4, 16) if quick else (200, None, None)
        self.quick = quick


# -- the measured step ----------------------------------------------------------------------------
def stage3(sizes: Sizes, depth: int, gradient: str, scheme: str, device: str) -> nn.Module:
    """Stage 3 of a ResNet-101 as the paper's stack: ``depth`` bottleneck blocks, h = 1/depth."""
    from resnode_lightning.models import PreActBottleneck
    from resnode_lightning.numerics import ResidualStack

    with torch.device(device):  # built where it runs: thousands of blocks initialise in seconds
        return ResidualStack([PreActBottleneck(sizes.channels) for _ in range(depth)], scheme=scheme, gradient=gradient)


def train_step(
    stack: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    forward: contextlib.AbstractContextManager | None = None,
) -> None:
    """Forward, backward and an SGD-with-momentum step, as in training (its momentum buffers count)."""
    with forward or contextlib.nullcontext():
        loss = stack(x.requires_grad_(True)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)


class Clock:
    """Seconds of work on ``device``: CUDA events on a GPU, the wall clock on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[float]]:
        elapsed: list[float] = []
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield elapsed
            end.record()
            torch.cuda.synchronize()
            elapsed.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            yield elapsed
            elapsed.append(time.perf_counter() - began)


class SavedBytes:
    """The bytes autograd saves for the backward in the forward passes run inside :meth:`counting`:
    the activation memory a step holds at its peak, where there is no device allocator to ask."""

    def __init__(self) -> None:
        self.total = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        def pack(tensor: torch.Tensor) -> torch.Tensor:
            self.total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield


def measure_step(sizes: Sizes, depth: int, gradient: str, scheme: str, device: str) -> dict:
    """Peak memory above what the step starts with (weights, gradients, momentum) and median seconds of a
    training step; ``{"oom": True}`` where it does not fit."""
    stack = optimizer = None
    if device == "cuda":  # what an earlier probe left
        gc.collect()
        torch.cuda.empty_cache()
    try:
        stack = stage3(sizes, depth, gradient, scheme, device)
        optimizer = torch.optim.SGD(stack.parameters(), lr=1e-4, momentum=0.9)
        x = torch.randn(sizes.batch, sizes.channels, sizes.maps, sizes.maps, device=device)
        train_step(stack, optimizer, x)  # warm-up: cuDNN's choices, .grad and momentum allocated
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            resting = torch.cuda.memory_allocated()
        clock, seconds, saved = Clock(device), [], SavedBytes()
        for _ in range(sizes.timed_steps):
            with clock.measure() as elapsed:
                train_step(stack, optimizer, x, forward=saved.counting() if device == "cpu" else None)
            seconds.extend(elapsed)
        peak = torch.cuda.max_memory_allocated() - resting if device == "cuda" else saved.total // sizes.timed_steps
        seconds.sort()
        return {"peak_bytes": peak, "step_seconds": seconds[len(seconds) // 2], "oom": False}
    except (torch.OutOfMemoryError, RuntimeError) as error:  # cuBLAS and cuDNN say it as RuntimeErrors
        if not is_out_of_memory(error):
            raise
        return {"oom": True}
    finally:
        del stack, optimizer


def is_out_of_memory(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


# -- sections -------------------------------------------------------------------------------------
def cuda_tests(sizes: Sizes, device: str, args) -> dict:
    selection = ["tests/test_cuda.py", "tests/test_data.py"]
    multi_gpu = device == "cuda" and torch.cuda.device_count() >= 2
    selection += ["tests/test_ddp.py"] if multi_gpu else []  # its SyncBatchNorm test: 2 ranks on 2 GPUs
    keyword = "cuda or syncbatchnorm"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection, "-k", keyword],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    return {"ok": done.returncode == 0, "summary": summary, "multi_gpu": multi_gpu, "exit_status": done.returncode}


def stage3_table(sizes: Sizes, device: str, args) -> dict:
    rows = []
    for depth in sizes.depths:
        baseline = None
        for gradient, scheme in MODES:
            measured = measure_step(sizes, depth, gradient, scheme, device)
            if gradient == "backprop":
                baseline = measured
            row = {"depth": depth, "gradient": gradient, "scheme": scheme, **measured}
            if not measured["oom"] and baseline and not baseline["oom"]:
                row["memory_ratio"] = measured["peak_bytes"] / baseline["peak_bytes"]
                row["time_ratio"] = measured["step_seconds"] / baseline["step_seconds"]
            rows.append(row)
            args.keep({"rows": rows})
            progress(f"stage 3, depth {depth}, {gradient} {scheme}: {shown_step(row)}")
    return {"ok": True, "rows": rows, "channels": sizes.channels, "maps": sizes.maps, "batch": sizes.batch,
            "memory": MEMORY_MEASURE[device]}  # fmt: skip


def deepest_under_cap(sizes: Sizes, device: str, args) -> dict:
    """The deepest depth of ``sizes.search`` (then one halfway step) whose step fits the cap, per mode."""
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, sizes.cap_bytes / total))

    def fits(measured: dict) -> bool:
        return not measured["oom"] and (device == "cuda" or measured["peak_bytes"] <= sizes.cap_bytes)

    rows = []
    try:
        for gradient, scheme in MODES:
            probe = functools.partial(measure_step, sizes, gradient=gradient, scheme=scheme, device=device)
            deepest, measured, too_deep = None, None, None
            for depth in sizes.search:
                result = probe(depth)
                if not fits(result):
                    too_deep = depth
                    break
                deepest, measured = depth, result
            if deepest is not None and too_deep is not None and too_deep - deepest > 1:
                halfway = (deepest + too_deep) // 2
                if fits(result := probe(halfway)):
                    deepest, measured = halfway, result
            row = {"gradient": gradient, "scheme": scheme, "deepest": deepest, "capped_search": too_deep is None}
            if measured is not None:
                row["images_per_second"] = sizes.batch / measured["step_seconds"]
                row["peak_bytes"] = measured["peak_bytes"]
            rows.append(row)
            args.keep({"rows": rows})
            progress(f"under {sizes.cap_bytes / 2**30:.3g} GiB: {gradient} {scheme} trains to depth {deepest}"
                     f"{' (or deeper: the search stops there)' if too_deep is None else ''}")  # fmt: skip
    finally:
        if device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    return {
        "ok": True, "cap_bytes": sizes.cap_bytes, "rows": rows, "batch": sizes.batch, "memory": MEMORY_MEASURE[device],
    }  # fmt: skip


def fp16_adjoint(sizes: Sizes, device: str, args) -> dict:
    """Lightning ``16-mixed`` steps through the adjoint, then one step's gradient error against float32 backprop."""
    from lightning.pytorch import Callback, Trainer

    from resnode_lightning.models import SimpleResNet
    from resnode_lightning.training import ImageClassifier

    precision = "16-mixed" if device == "cuda" else "bf16-mixed"

    class FiniteWeights(Callback):
        def __init__(self) -> None:
            self.non_finite_steps = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
                self.non_finite_steps += 1

    torch.manual_seed(0)
    images = torch.randn(sizes.batch * 4, 3, 32, 32)
    labels = torch.randint(0, 10, (len(images),))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=sizes.batch)
    network = SimpleResNet(depth=16, gradient="adjoint")
    model = ImageClassifier(network, num_classes=10, optimizer=functools.partial(torch.optim.SGD, lr=0.05))
    watch = FiniteWeights()
    trainer = Trainer(
        accelerator=device, devices=1, precision=precision, max_steps=sizes.fp16_steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[watch],
    )  # fmt: skip
    trainer.fit(model, loader)
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    x, y = images[: sizes.batch].to(device), labels[: sizes.batch].to(device)
    network = network.to(device).train()
    half = torch.float16 if device == "cuda" else torch.bfloat16
    reference = gradients(network, x, y, "backprop", None)
    low = flat_error(gradients(network, x, y, "adjoint", half), reference)
    own = flat_error(gradients(network, x, y, "adjoint", None), reference)  # the adjoint's own, in float32
    rounding = flat_error(gradients(network, x, y, "backprop", half), reference)  # half precision's own
    return {
        # every step taken, no weight left non-finite, and half precision through the adjoint costs no more
        # than the adjoint's own error plus what half precision costs backprop
        "ok": watch.non_finite_steps == 0 and trainer.global_step == sizes.fp16_steps and low <= 2 * (own + rounding),
        "precision": precision,
        "steps": trainer.global_step,
        "non_finite_weights_after_steps": watch.non_finite_steps,
        "final_loss_scale": float(scaler.get_scale()) if scaler is not None else None,
        "relative_gradient_error_vs_fp32_backprop": low,
        "float32_adjoint_relative_gradient_error": own,
        "half_precision_backprop_relative_gradient_error": rounding,
    }


def flat_error(gradients: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """:func:`~resnode_lightning.diagnostics.relative_error` over all parameters together."""
    from resnode_lightning.diagnostics import relative_error

    return relative_error(torch.cat([g.flatten() for g in gradients]), torch.cat([g.flatten() for g in reference]))


def gradients(network: nn.Module, x: torch.Tensor, y: torch.Tensor, gradient: str, dtype) -> list[torch.Tensor]:
    """The parameter gradients of one cross-entropy step, under autocast to ``dtype`` (None: float32)."""
    from resnode_lightning.numerics import ResidualStack, preserved_buffers

    for stack in (m for m in network.modules() if isinstance(m, ResidualStack)):
        stack.gradient = gradient
    network.zero_grad(set_to_none=True)
    with preserved_buffers(list(network.buffers())):
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(network(x), y)
        loss.backward()
    return [p.grad.detach().float().clone() for p in network.parameters()]


def random_replay(sizes: Sizes, device: str, args) -> dict:
    """Dropout and stochastic depth inside adjoint blocks, anchored every step: backprop's gradients exactly."""
    from torchvision.ops import StochasticDepth

    from resnode_lightning.numerics import ResidualStack

    torch.manual_seed(0)
    blocks = [
        nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Dropout(0.3), StochasticDepth(0.3, "row")) for _ in range(8)
    ]
    x = torch.randn(64, 32, device=device, dtype=torch.float64)
    grads = {}
    for gradient in ("backprop", "adjoint"):
        stack = ResidualStack(blocks, gradient=gradient, anchor_every=1).to(device).double()
        torch.manual_seed(3)
        stack(x.clone().requires_grad_(True)).square().mean().backward()
        grads[gradient] = [p.grad.clone() for p in stack.parameters()]
        stack.zero_grad(set_to_none=True)
    difference = max((a - b).abs().max().item() for a, b in zip(grads["adjoint"], grads["backprop"]))
    return {"ok": difference == 0.0, "largest_difference": difference}


def fit(sizes: Sizes, device: str, args) -> dict:
    """``resnode fit --config cifar_adjoint.yaml`` for a few hundred steps: images/s, share of time waiting for data."""
    from resnode_lightning.cli import main

    root = Path(args.cifar_root)
    if not root.is_dir():
        return {"ok": False, "error": f"no CIFAR-10 image folder at {root}: give --cifar-root (make device-check "
                "unpacks it)"}  # fmt: skip
    options = [
        "fit", "--config", "cifar_adjoint.yaml", "--data.root", str(root), "--trainer.max_steps", str(sizes.fit_steps),
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", device,
        "--trainer.profiler", "lightning.pytorch.profilers.SimpleProfiler", "--trainer.profiler.dirpath", args.work,
        "--trainer.profiler.filename", "fit-profile", "--trainer.default_root_dir", str(Path(args.work) / "runs"),
    ]  # fmt: skip
    if sizes.fit_depth:
        options += ["--model.network.depth", str(sizes.fit_depth), "--data.batch_size", str(sizes.fit_batch)]
    began = time.perf_counter()
    try:
        cli = main(options)
    except SystemExit as stop:  # resnode refused the options (its message is above)
        return {"ok": False, "error": f"resnode fit exited with status {stop.code}"}
    wall = time.perf_counter() - began
    durations = cli.trainer.profiler.recorded_durations
    waiting = sum(durations.get("[_TrainingEpochLoop].train_dataloader_next", []))
    stepping = sum(durations.get("run_training_batch", []))
    batch = cli.datamodule.batch_size
    return {
        "ok": cli.trainer.global_step == sizes.fit_steps,
        "steps": cli.trainer.global_step,
        "batch": batch,
        "images_per_second": cli.trainer.global_step * batch / (waiting + stepping),
        "data_wait_share": waiting / (waiting + stepping),
        "wall_seconds_with_setup": wall,
    }


def imagenet_decode(sizes: Sizes, device: str, args) -> dict:
    """Images/s of ImageNet batches (random resized crops) decoded in DataLoader workers and
    moved to the device, against decoded on the device in batches (``--data.decode device``), on a
    generated tree of ImageNet-sized JPEGs (500x375, noisy so that they compress as photos do)."""
    from types import SimpleNamespace

    from imagenet_pipeline import jpeg_tree

    from resnode_lightning.data import ImageNetDataModule

    classes, per_class, side, crop, batch = (2, 8, 64, 32, 8) if sizes.quick else (8, 64, 500, 224, 64)
    root = jpeg_tree(Path(args.work) / f"imagenet-like-{side}", classes, per_class, side)
    workers = min(8, os.cpu_count() or 1)
    rates = {}
    for decode in ("workers", "device"):
        data = ImageNetDataModule(root=str(root), num_classes=classes, image_size=crop, batch_size=batch,
                                  num_workers=workers, val_dir="train", decode=decode)  # fmt: skip
        data.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1,
                                       strategy=SimpleNamespace(root_device=torch.device(device)))  # fmt: skip
        data.setup("fit")
        images, began = 0, None
        for files, _ in data.train_dataloader():
            pixels = data.on_before_batch_transfer((files, None), 0)[0].to(device)
            if device == "cuda":
                torch.cuda.synchronize()
            if began is None:  # the first batch waits for the workers to start
                began = time.perf_counter()
                continue
            images += len(pixels)
        rates[decode] = images / (time.perf_counter() - began) if images else float("nan")
        assert pixels.shape[1:] == (3, crop, crop), pixels.shape
    progress(f"ImageNet-sized JPEGs: {rates['workers']:.0f} images/s decoded by {workers} workers, "
             f"{rates['device']:.0f} decoded on {device} in batches")  # fmt: skip
    return {"ok": True, "workers": workers, "images_per_second": rates, "crop": crop, "jpeg_side": side,
            "images": classes * per_class}  # fmt: skip


SECTIONS: dict[str, Callable] = {
    "cuda_tests": cuda_tests,
    "stage3": stage3_table,
    "deepest_under_16gib": deepest_under_cap,
    "fp16_adjoint": fp16_adjoint,
    "random_replay": random_replay,
    "fit": fit,
    "imagenet_decode": imagenet_decode,
}


# -- output -------------------------------------------------------------------------------------
def progress(line: str) -> None:
    print(f"[device-check] {line}", flush=True)


def shown_step(row: dict) -> str:
    if row.get("oom"):
        return "out of memory"
    ratios = f" ({row['memory_ratio']:.2f}x memory, {row['time_ratio']:.2f}x time)" if "time_ratio" in row else ""
    return f"{row['peak_bytes'] / 2**20:.1f} MiB, {row['step_seconds'] * 1000:.1f} ms{ratios}"


def table(results: dict) -> str:
    lines = [f"device check on {results['device_name']} ({results['mode']})", ""]
    for name, section in results["sections"].items():
        lines.append(f"{name:22s} {'ok' if section.get('ok') else 'FAILED'}  {section_line(name, section)}")
        if name == "stage3":
            for row in section.get("rows", []):
                lines.append(f"    depth {row['depth']:5d} {row['gradient']:10s} {row['scheme']:5s} {shown_step(row)}")
        if name == "deepest_under_16gib":
            for row in section.get("rows", []):
                speed = f", {row['images_per_second']:.0f} images/s" if "images_per_second" in row else ""
                more = " (search cap)" if row["capped_search"] else ""
                lines.append(f"    {row['gradient']:10s} {row['scheme']:5s} depth {row['deepest']}{more}{speed}")
    return "\n".join(lines)


def section_line(name: str, section: dict) -> str:
    if "error" in section:
        return section["error"].splitlines()[-1][:120]
    if name == "cuda_tests":
        return section["summary"]
    if name == "fp16_adjoint":
        return (f"{section['steps']} {section['precision']} steps, {section['non_finite_weights_after_steps']} with "
                f"non-finite weights, gradient error {section['relative_gradient_error_vs_fp32_backprop']:.2e} "
                f"(float32 adjoint {section['float32_adjoint_relative_gradient_error']:.1e}, half-precision backprop "
                f"{section['half_precision_backprop_relative_gradient_error']:.1e})")  # fmt: skip
    if name == "random_replay":
        return f"largest difference to backprop {section['largest_difference']:.1e}"
    if name == "imagenet_decode":
        rates = section["images_per_second"]
        return f"{rates['workers']:.0f} images/s by {section['workers']} workers, {rates['device']:.0f} on the device"
    if name == "fit":
        return (f"{section['images_per_second']:.0f} images/s, {100 * section['data_wait_share']:.1f} % of the loop "
                f"waiting for data")  # fmt: skip
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="toy sizes (the suite runs --device cpu --quick)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file (default: docs/results/device_check.json"
                        " on CUDA, benchmarks/results/device_check_quick.json otherwise)")  # fmt: skip
    parser.add_argument("--cifar-root", default=str(REPOSITORY / ".cache" / "cifar10-jpg"))
    parser.add_argument("--work", default=str(REPOSITORY / "benchmarks" / "results" / "device_check_work"))
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run these sections only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("device-check: no CUDA device here; run it where there is one, or with --device cpu --quick.")
        return 2
    full_gpu_run = args.device == "cuda" and not args.quick
    default = "docs/results/device_check.json" if full_gpu_run else "benchmarks/results/device_check_quick.json"
    out = args.out or REPOSITORY / default
    out.parent.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(args.quick)
    results = {
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU",
        "mode": "quick" if args.quick else "full",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sections": {},
    }
    began = time.perf_counter()
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        progress(f"{name} ...")
        started = time.perf_counter()

        def keep(partial: dict, name: str = name) -> None:  # a section's rows so far, should it be cut short
            results["sections"][name] = {"ok": False, "unfinished": True, **partial}
            out.write_text(json.dumps(results, indent=1) + "\n")

        args.keep = keep
        try:
            results["sections"][name] = section(sizes, args.device, args)
        except Exception:  # one section failing must not lose the others' measurements
            results["sections"][name] = {"ok": False, "error": traceback.format_exc()}
        results["sections"][name]["seconds"] = time.perf_counter() - started
        results["seconds"] = time.perf_counter() - began
        out.write_text(json.dumps(results, indent=1) + "\n")  # after every section: a cut-short run keeps its part
    print("\n" + table(results) + f"\n\n{results['seconds']:.0f} s; written to {out}")
    return 0 if all(section.get("ok") for section in results["sections"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(main())
