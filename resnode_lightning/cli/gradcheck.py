"""``resnode gradcheck``: the adjoint's gradient error of a config's network over depths (the
paper's Figure 3c).

The network is built from the config as ``resnode fit`` builds it (the same options: shipped
names, several ``--config`` files composed, ``--data.root``; a run's saved ``config.yaml``), given
trained weights from ``--ckpt_path`` if any (a file, a run folder or ``last``, read weights-only),
then deepened to each depth with
:func:`~resnode_lightning.models.deepen` (block i of M takes block ⌊i·N/M⌋, or a linear mix).
At each depth, with every stack under Euler and then under Heun, on one batch of the config's
training data (random inputs of its shape when the data is not there, as the output says),
:func:`~.gradient_error.adjoint_gradient_errors` gives, for every parameter tensor of every
residual stack, ‖g − g*‖ / ‖g*‖: the adjoint's gradient g against backprop's g*, in float64, the
network in train mode (BatchNorm with batch statistics). Expected (docs/method.md): the error
falls like 1/N for Euler, and Heun's is lower when the weights are smooth in depth.

Writes a table on the terminal and into the output folder (``gradcheck.txt``), every error in
``gradcheck.json`` and the figure ``gradcheck.png`` (relative error per parameter tensor vs depth,
Euler vs Heun, log scales).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import Namespace
from jsonargparse.typing import PositiveInt
from torch import Tensor

from ..diagnostics.depth_sweep import SCHEMES, measure
from ..files import atomic_write_text
from ..models import load_weights
from ..training.weights import read_network_weights
from .runs import RUNS, new_run_folder, resolve_checkpoint, run_of_config

LABELS = {"euler": "ResNet (Euler)", "heun": "HeunNet"}
ROUNDING = 1e-12  # float64 errors below this are rounding: the adjoint is exact there
DEFAULT_DEPTHS = (4, 8, 16, 32, 64)


def gradcheck_options(
    depths: list[PositiveInt] = list(DEFAULT_DEPTHS),  # noqa: B006  (a plain value jsonargparse shows and copies)
    samples: PositiveInt = 16,
    interpolation: Literal["constant", "linear"] = "constant",
    device: str | None = None,
    output: str | None = None,
) -> None:
    """The options of ``resnode gradcheck`` beside the model, the data and ``--ckpt_path``.

    Args:
        depths: depths as the network's constructor counts them (a ResNet: blocks per stage,
            transition block included; a SimpleResNet: N).
        samples: samples of the batch the gradients are measured on.
        interpolation: how deepening fills the new blocks: the paper's piecewise-constant rule,
            or linear in depth.
        device: where to compute (default: cuda if available, else cpu).
        output: folder for the results (default: a new runs/gradcheck/<config>/version_<k>).
    """


def run(parser, config: Namespace) -> int:
    """``resnode gradcheck``: measure, print the table, write the results; 0 when done."""
    names = [str(c) for c in config.config]
    trained_run = run_of_config(names[-1]) if names else None  # --config RUN_FOLDER: measure the run's weights
    checkpoint_value = config.get("ckpt_path") or (str(trained_run) if trained_run is not None else None)
    weights, described = None, "as initialised by the config (no --ckpt_path)"
    if checkpoint_value:
        runs_of_config = Path(config.trainer.default_root_dir or RUNS) / Path(names[0]).stem if names else None
        checkpoint = resolve_checkpoint(checkpoint_value, "weights", runs_of_config, option="--ckpt_path")
        weights, described = read_network_weights(checkpoint), str(checkpoint)
    model, datamodule = build_model_and_data(parser, config)
    network = model.network
    if weights is not None:
        load_weights(network, weights)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    inputs, labels, source = one_batch(datamodule, config.samples)
    network = network.to(device, torch.float64).train()
    inputs, labels = inputs.to(device, torch.float64), labels.to(device)
    loss = lambda outputs: model.loss(outputs, labels)  # noqa: E731  (the classifier's loss, label smoothing included)
    results = measure(network, inputs, loss, list(config.depths), config.interpolation)

    name = trained_run.parent.name if trained_run is not None else Path(names[0]).stem if names else "resnode"
    folder = Path(config.output) if config.output else new_run_folder(Path(RUNS) / "gradcheck", name)
    header = [
        f"resnode gradcheck: {' + '.join(names)}; weights: {described}",
        f"inputs: {source}; float64 on {device}; network in train mode",
        "relative error ‖g − g*‖/‖g*‖ of the adjoint's gradient per parameter tensor of every residual stack;",
        "Δ/‖θ‖: the weights' smoothness in depth, max_n ‖θ_{n+1} − θ_n‖ / max_n ‖θ_n‖ over blocks (largest stack)",
    ]
    text = "\n".join([*header, "", table(results)])
    if all(row["max"] < ROUNDING for row in results):
        text += (
            "\nEvery error is at rounding level: the residual functions are zero (e.g. zero-initialised last "
            "BatchNorm, as the network is built), where the adjoint is exact. Give trained weights with --ckpt_path."
        )
    print(text)
    summary = {"config": names, "weights": described, "inputs": source, "samples": len(labels),
               "interpolation": config.interpolation, "results": results}  # fmt: skip
    atomic_write_text(folder / "gradcheck.txt", text + "\n")
    atomic_write_text(folder / "gradcheck.json", json.dumps(finite(summary), indent=1) + "\n")
    plot(results, folder / "gradcheck.png", title=f"{name}: adjoint vs backprop")
    print(f"\nWritten: {folder / 'gradcheck.txt'}, {folder / 'gradcheck.json'}, {folder / 'gradcheck.png'}")
    return 0


def build_model_and_data(parser, config: Namespace) -> tuple[Any, Any]:
    """The LightningModule (its ``network`` and ``loss``) and the data module the config describes,
    built as ``resnode fit`` builds them; no trainer, no run folder."""
    only = Namespace(model=config.model, data=config.data)
    built = parser.instantiate_classes(only)
    return built.model, built.data


def one_batch(datamodule: Any, samples: int) -> tuple[Tensor, Tensor, str]:
    """The first ``samples`` images and labels of one training batch, as a training step sees them
    (normalised); random images of the data's shape when the data cannot be read, and which it is."""
    try:
        if callable(check_data := getattr(datamodule, "check_data", None)):
            check_data()
        datamodule.setup("fit")
        images, labels = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
        kind = f"one training batch of the config's data ({type(datamodule).__name__})"
        return images[:samples], labels[:samples], f"{kind}, {min(samples, len(labels))} samples"
    except (OSError, ValueError, RuntimeError) as error:
        size = getattr(datamodule, "image_size", 32)
        shape = (samples, getattr(datamodule, "in_channels", 3), size, size)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(shape, generator=generator)
        labels = torch.randint(getattr(datamodule, "num_classes", 10), (samples,), generator=generator)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return images, labels, f"random inputs of shape {list(shape)}: the config's data is not available ({reason})"


def table(results: list[dict[str, Any]]) -> str:
    """depth | Euler median, max | Heun median, max | Δ/‖θ‖, the weights' largest step in depth."""
    lines = [f"{'depth':>6}  {'euler median':>12}  {'euler max':>10}  {'heun median':>12}  {'heun max':>10}  "
             f"{'Δ/‖θ‖':>8}"]  # fmt: skip
    for depth in dict.fromkeys(row["depth"] for row in results):
        cells = []
        for scheme in SCHEMES:
            row = next(r for r in results if r["depth"] == depth and r["scheme"] == scheme)
            cells += [f"{row['median']:>12.3g}", f"{row['max']:>10.3g}"]
        lines.append(f"{depth:>6}  " + "  ".join(cells) + f"  {row['max_relative_step']:>8.3g}")
    return "\n".join(lines)


def finite(value: Any) -> Any:
    """The results with inf and nan as None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Relative error of every parameter tensor (dots) and its median (line) vs depth, per scheme,
    log-log; zero errors (exact) cannot be drawn on a log scale and are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.2))
    drawn = False
    for scheme, color, offset in (("euler", "tab:blue", 0.97), ("heun", "tab:orange", 1.03)):
        rows = [r for r in results if r["scheme"] == scheme]
        for row in rows:
            every = [e for s in row["stacks"].values() for e in s["relative_errors"].values() if 0 < e < math.inf]
            axes.scatter([row["depth"] * offset] * len(every), every, s=6, alpha=0.3, color=color, linewidths=0)
            drawn = drawn or bool(every)
        medians = [(r["depth"], r["median"]) for r in rows if 0 < r["median"] < math.inf]
        if medians:
            axes.plot(*zip(*medians), "o-", color=color, label=f"{LABELS[scheme]}, median")
    axes.set(xscale="log", yscale="log", xlabel="depth", ylabel="relative gradient error per parameter", title=title)
    depths = sorted({r["depth"] for r in results})
    axes.set_xticks(depths, [str(d) for d in depths])
    axes.minorticks_off()
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    if not drawn:  # nothing positive to draw: give the log axis a range of its own
        axes.set_ylim(1e-17, 1)
        axes.text(0.5, 0.5, "every error is 0 (exact)", transform=axes.transAxes, ha="center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
