"""``resnode gradcheck``: the adjoint's gradient error of a config's network over depths (the
paper's Figure 3c).

The network is built from the config by the parser of ``resnode fit`` (shipped names, several
``--config`` files composed), given trained weights from ``--ckpt_path`` if any (loaded weights
only by :func:`~resnode_lightning.models.load_weights`), then deepened to each depth with
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

import argparse
import copy
import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models import deepen, load_weights, named_stacks
from ..training.command_line import positive
from ..training.run_folder import RUNS, new_run_folder
from .gradient_error import adjoint_gradient_errors

SCHEMES = ("euler", "heun")
LABELS = {"euler": "ResNet (Euler)", "heun": "HeunNet"}
ROUNDING = 1e-12  # float64 errors below this are rounding: the adjoint is exact there


PARSER = argparse.ArgumentParser(
    prog="resnode gradcheck",
    usage="resnode gradcheck --config X [--config Y ...] [--ckpt_path CKPT] [--depths 4 8 16 32 64] [--output DIR] "
    "[--samples N]",
    description="The relative error of the adjoint's parameter gradients against exact ones, per parameter tensor "
    "of every residual stack, for the config's network deepened to each depth, Euler and Heun (the paper's "
    "Figure 3c): a table, gradcheck.json and gradcheck.png.",
)
PARSER.add_argument(
    "--config", action="append", required=True,
    help="a config file or the name of a shipped one, as for resnode fit; repeat to compose",
)  # fmt: skip
PARSER.add_argument(
    "--ckpt_path",
    help="trained weights: a Lightning checkpoint or a torch.save'd state dict (weights only; any depth or tying, "
    "converted as init_from does); none: the network as the config builds it",
)
PARSER.add_argument(
    "--depths", type=positive, nargs="+", default=[4, 8, 16, 32, 64],
    help="depths as the network's constructor counts them (a ResNet: blocks per stage, transition block "
    "included; a SimpleResNet: N); default 4 8 16 32 64",
)  # fmt: skip
PARSER.add_argument(
    "--output", type=Path, help="folder for the results (default: a new runs/gradcheck/<config>/version_<k>)"
)
PARSER.add_argument("--samples", type=positive, default=16, help="samples of the batch (default 16)")
PARSER.add_argument(
    "--interpolation", choices=("constant", "linear"), default="constant",
    help="how deepening fills the new blocks: the paper's piecewise-constant rule, or linear in depth",
)  # fmt: skip
PARSER.add_argument(
    "--device", default="cuda" if torch.cuda.is_available() else "cpu",
    help="where to compute (default: cuda if available, else cpu)",
)  # fmt: skip


def gradcheck_command(args: list[str]) -> None:
    """``resnode gradcheck ...``: measure, print the table, write the results (exit 2 on bad input)."""
    options = PARSER.parse_args(args)
    model, datamodule = build_from_config(options.config)
    network = model.network
    if options.ckpt_path is not None:
        try:
            load_weights(network, options.ckpt_path)
        except ValueError as error:
            PARSER.error(f"--ckpt_path: {error}")
    device = torch.device(options.device)
    inputs, labels, source = one_batch(datamodule, options.samples)
    network = network.to(device, torch.float64).train()
    inputs, labels = inputs.to(device, torch.float64), labels.to(device)
    loss = lambda outputs: model.loss(outputs, labels)  # noqa: E731  (the classifier's loss, label smoothing included)
    results = measure(network, inputs, loss, options.depths, options.interpolation)

    name = Path(options.config[0]).stem
    folder = options.output or new_run_folder(Path(RUNS) / "gradcheck", name)
    folder.mkdir(parents=True, exist_ok=True)
    weights = options.ckpt_path or "as initialised by the config (no --ckpt_path)"
    header = [
        f"resnode gradcheck: {' + '.join(options.config)}; weights: {weights}",
        f"inputs: {source}; float64 on {device}; network in train mode",
        "relative error ‖g − g*‖/‖g*‖ of the adjoint's gradient per parameter tensor of every residual stack",
    ]
    text = "\n".join([*header, "", table(results)])
    if all(row["max"] < ROUNDING for row in results):
        text += (
            "\nEvery error is at rounding level: the residual functions are zero (e.g. zero-initialised last "
            "BatchNorm, as the network is built), where the adjoint is exact. Give trained weights with --ckpt_path."
        )
    print(text)
    (folder / "gradcheck.txt").write_text(text + "\n")
    summary = {"config": options.config, "weights": weights, "inputs": source, "samples": len(labels),
               "interpolation": options.interpolation, "results": results}  # fmt: skip
    (folder / "gradcheck.json").write_text(json.dumps(finite(summary), indent=1) + "\n")
    plot(results, folder / "gradcheck.png", title=f"{name}: adjoint vs backprop")
    print(f"\nWritten: {folder / 'gradcheck.txt'}, {folder / 'gradcheck.json'}, {folder / 'gradcheck.png'}")


def build_from_config(configs: list[str]) -> tuple[nn.Module, Any]:
    """The LightningModule (its ``network`` and ``loss``) and the data module the configs describe,
    parsed as ``resnode fit`` parses them; no trainer, no run folder."""
    from ..cli import ResNodeCLI, reported_as_input_errors, resnode_cli

    class ModelAndData(ResNodeCLI):
        def before_instantiate_classes(self) -> None:
            """No run folder: nothing is trained."""

        def instantiate_classes(self) -> None:
            with reported_as_input_errors(self):
                self.config_init = self.parser.instantiate_classes(self.config)
                self.model, self.datamodule = self.config_init["model"], self.config_init["data"]

    arguments = [word for config in configs for word in ("--config", config)]
    with warnings.catch_warnings():  # sys.argv holds `resnode gradcheck ...`, not these arguments
        warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended to run from within Python")
        cli = resnode_cli(arguments, ModelAndData, run=False)
    return cli.model, cli.datamodule


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


def measure(network: nn.Module, inputs: Tensor, loss, depths: list[int], interpolation: str) -> list[dict[str, Any]]:
    """One row per depth and scheme: the errors of every stack, and their median and max."""
    rows = []
    for depth in depths:
        deep = deepen(copy.deepcopy(network), depth, interpolation)
        stacks = dict(named_stacks(deep))
        for scheme in SCHEMES:
            for stack in stacks.values():
                stack.scheme = scheme
            errors = adjoint_gradient_errors(deep, inputs, loss, stacks)
            every = [e for error in errors.values() for e in error.relative_errors.values()]
            rows.append({
                "depth": depth, "scheme": scheme,
                "stack_depths": {name: stack.depth for name, stack in stacks.items()},
                "median": statistics.median(every) if every else math.nan, "max": max(every, default=math.nan),
                "stacks": {
                    name: {"relative_errors": error.relative_errors, "cosine_similarity": error.cosine_similarity,
                           "reconstruction_error": error.reconstruction_error}
                    for name, error in errors.items()
                },
            })  # fmt: skip
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """depth | Euler median, max | Heun median, max."""
    lines = [f"{'depth':>6}  {'euler median':>12}  {'euler max':>10}  {'heun median':>12}  {'heun max':>10}"]
    for depth in dict.fromkeys(row["depth"] for row in results):
        cells = []
        for scheme in SCHEMES:
            row = next(r for r in results if r["depth"] == depth and r["scheme"] == scheme)
            cells += [f"{row['median']:>12.3g}", f"{row['max']:>10.3g}"]
        lines.append(f"{depth:>6}  " + "  ".join(cells))
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
