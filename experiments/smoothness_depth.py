"""Beyond the paper: does SGD make a convolutional ResNet's weights smooth in depth?

The Heun adjoint's error has a term in Δ_N = max_n ‖θ_{n+1} − θ_n‖; the paper proves Δ_N → 0 with
depth after training for linear ResNets only. Here the Figure 4 network (the simple ResNet: one
stack of N pre-activation blocks, 16 channels, 10x10 maps, Heun, h = 1/N) is trained on CIFAR-10
with backprop at N = 4 .. 64, from two initialisations:

- ``independent``: every block drawn on its own (the default);
- ``deepened``: an 8-block network drawn, then deepened to N piecewise constant in depth (the
  paper's code built its deep networks so: blocks 8k/N .. 8(k+1)/N share block k's weights).

For each run: Δ_N and Δ_N / max_n ‖θ_n‖ (diagnostics.smoothness) at initialisation and after
training, the test accuracy, and the adjoint's relative gradient error (median over the stack's
parameter tensors, Heun and Euler, on 32 training images, float64) on the trained weights.
Training: 250 steps of SGD (momentum 0.9, lr 0.1 scaled by the depth for the stack's parameters,
as the paper's code did, ``--adaptive``), batch 128, 1 seed (0). Each run's result is kept in
.cache/experiments/smoothness/<init>-<N>.json, so a stopped run resumes with the runs not done.

    python experiments/smoothness_depth.py      # about 10 min alone on 2 CPU cores

Writes docs/results/smoothness_depth.{json,png}.
"""

from __future__ import annotations

import copy
import functools
import json
import statistics
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from results import figure_path, timed

from resnode_lightning.data import CIFAR10DataModule
from resnode_lightning.diagnostics import adjoint_gradient_errors, depth_smoothness
from resnode_lightning.models import SimpleResNet
from resnode_lightning.training import ImageClassifier

REPOSITORY = Path(__file__).resolve().parents[1]
CIFAR = REPOSITORY / ".cache" / "cifar10-jpg"
WORK = REPOSITORY / ".cache" / "experiments" / "smoothness"
DEPTHS = [4, 8, 16, 32, 64]
INITS = ["independent", "deepened"]
STEPS, BATCH, LR, SEED = 250, 128, 0.1, 0


def network(init: str, depth: int) -> SimpleResNet:
    seed_everything(SEED)
    if init == "independent":
        return SimpleResNet(depth=depth, scheme="heun")
    eight = SimpleResNet(depth=8, scheme="heun")
    eight.stack.deepen(depth, "constant")
    return eight


def smoothness(net: SimpleResNet) -> dict[str, float]:
    measured = depth_smoothness(net.stack)
    return {"max_step": measured.max_step, "relative": measured.relative}


def gradient_errors(net: SimpleResNet, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Median relative error of the adjoint's gradients per scheme, in float64, train mode."""
    measured = copy.deepcopy(net).double().train()
    errors = {}
    for scheme in ("heun", "euler"):
        measured.stack.scheme = scheme
        stacks = {"stack": measured.stack}
        loss = functools.partial(torch.nn.functional.cross_entropy, target=labels)
        error = adjoint_gradient_errors(measured, images.double(), loss, stacks)["stack"]
        errors[scheme] = statistics.median(error.relative_errors.values())
    return errors


def one_run(init: str, depth: int, data: CIFAR10DataModule) -> dict:
    path = WORK / f"{init}-{depth}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    net = network(init, depth)
    before = smoothness(net)
    sgd = functools.partial(torch.optim.SGD, lr=LR, momentum=0.9, weight_decay=5e-4)
    model = ImageClassifier(net, num_classes=10, optimizer=sgd, scale_stack_lr_by_depth=True)
    trainer = Trainer(accelerator="cpu", max_steps=STEPS, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=20,
                      num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, data)
    trainer.validate(model, datamodule=data, verbose=False)  # 20 batches: 2,560 test images
    images, labels = data.transform_batch(next(iter(data.train_dataloader())), training=False)
    result = {
        "init": init, "depth": depth, "before": before, "after": smoothness(net),
        "val_acc1": float(trainer.callback_metrics["val/acc1"]),
        "adjoint_gradient_error": gradient_errors(net, images[:32], labels[:32]),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"{init} N={depth}: Δ/‖θ‖ {before['relative']:.3g} → {result['after']['relative']:.3g}, "
          f"val {result['val_acc1']:.3f}, Heun adjoint error {result['adjoint_gradient_error']['heun']:.2e} "
          f"({result['seconds']} s)", flush=True)  # fmt: skip
    return result


def plot(runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for init, color in zip(INITS, ("tab:blue", "tab:orange")):
        mine = sorted((r for r in runs if r["init"] == init), key=lambda r: r["depth"])
        depths = [r["depth"] for r in mine]
        left.plot(depths, [r["before"]["relative"] for r in mine], "o--", color=color, label=f"{init}, at init")
        left.plot(depths, [r["after"]["relative"] for r in mine], "o-", color=color, label=f"{init}, trained")
        right.plot(depths, [r["adjoint_gradient_error"]["heun"] for r in mine], "o-", color=color,
                   label=f"{init}: Heun")  # fmt: skip
        right.plot(depths, [r["adjoint_gradient_error"]["euler"] for r in mine], "s:", color=color,
                   label=f"{init}: Euler")  # fmt: skip
    left.set(xscale="log", yscale="log", xlabel="depth N", ylabel="Δ_N / max‖θ_n‖",
             title="smoothness of the weights in depth")  # fmt: skip
    right.set(xscale="log", yscale="log", xlabel="depth N", ylabel="adjoint's relative gradient error (median)",
              title="trained weights: the adjoint's error")  # fmt: skip
    for axis in (left, right):
        axis.set_xticks(DEPTHS, [str(d) for d in DEPTHS])
        axis.minorticks_off()
        axis.legend(fontsize=8)
    figure.suptitle(f"Simple ResNet (Heun) on CIFAR-10, {STEPS} steps of SGD, 1 seed")
    figure.tight_layout()
    figure.savefig(figure_path("smoothness_depth"), dpi=120)


def main() -> None:
    with timed("smoothness_depth") as record:
        data = CIFAR10DataModule(root=str(CIFAR), batch_size=BATCH)
        data.prepare_data()
        data.setup("fit")
        runs = [one_run(init, depth, data) for init in INITS for depth in DEPTHS]
        record.update({"steps": STEPS, "batch": BATCH, "lr": LR, "scale_stack_lr_by_depth": True, "seeds": [SEED],
                       "network": "SimpleResNet(depth=N, scheme='heun'), 16 channels", "runs": runs})  # fmt: skip
        plot(runs)


if __name__ == "__main__":
    main()
