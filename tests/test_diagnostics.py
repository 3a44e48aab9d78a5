"""Diagnostics of the adjoint: its gradient error measured beside exact gradients, during training
(GradientErrorMonitor, with its fallback to exact gradients) and over depths (resnode gradcheck)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger
from stacks import conv_block, gradients, random_blocks, relative_error, stack_of
from torch import nn
from training_helpers import RandomImages, trainer

from resnode_lightning.cli import main
from resnode_lightning.cli.app import resnode_cli
from resnode_lightning.diagnostics import adjoint_gradient_errors, depth_smoothness
from resnode_lightning.models import named_stacks
from resnode_lightning.numerics import GeneratorStates, ResidualStack
from resnode_lightning.training import GradientErrorMonitor, ImageClassifier


def images(batch: int = 8, channels: int = 4, size: int = 5) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def mean_square(output: torch.Tensor) -> torch.Tensor:
    return (output**2).mean()


class DropoutBlock(nn.Module):
    """A pre-activation block with Dropout inside: it draws random numbers at every evaluation."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.block, self.dropout = conv_block(channels), nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.block(x))


def network(depth: int = 3, zero_residuals: bool = False, dropout: bool = False) -> nn.Module:
    """conv → BatchNorm → adjoint stack → BatchNorm → pool → linear, in float64."""
    torch.manual_seed(0)
    make = DropoutBlock if dropout else (lambda: conv_block(zero_init_last_bn=zero_residuals))
    return nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
        ResidualStack([make() for _ in range(depth)], gradient="adjoint"),
        nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()  # fmt: skip


def test_a_lone_stack_has_the_error_of_its_adjoint_gradients_against_backprop():
    stack = stack_of(random_blocks(conv_block, 3), gradient="adjoint")
    x = images()
    (error,) = adjoint_gradient_errors(stack, x, mean_square, {"stack": stack}).values()
    _, _, exact, _ = gradients(stack, x, "backprop")
    _, _, adjoint, _ = gradients(stack, x, "adjoint")
    names = [name for name, _ in stack.named_parameters()]
    for name, g, r in zip(names, adjoint, exact):
        assert abs(error.relative_errors[name] - relative_error([g], [r])) < 1e-9 * max(1, error.relative_errors[name])
    assert error.median > 1e-3 and error.max >= error.median and error.cosine_similarity < 1
    assert abs(error.reconstruction_error - ((stack.reconstruct_input(stack(x)) - x).norm() / x.norm()).item()) < 1e-12


def test_the_adjoint_of_zero_residuals_measures_exact():
    model = network(zero_residuals=True)
    (error,) = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(),
                                       dict(named_stacks(model))).values()  # fmt: skip
    assert error.max < 1e-10 and error.reconstruction_error == 0 and abs(error.cosine_similarity - 1) < 1e-12


def test_measuring_moves_no_statistic_no_gradient_no_random_state_no_mode():
    model = network(dropout=True).train()
    model[0].eval()  # a part in eval mode stays in eval mode
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    state = {name: t.clone() for name, t in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    generator = torch.get_rng_state()
    errors = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(), dict(named_stacks(model)))
    assert errors["2"].median > 0
    assert all(torch.equal(t, state[name]) for name, t in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), generator)
    assert [m.training for m in model.modules()] == modes and model[2].gradient == "adjoint"


def test_dropout_draws_the_same_masks_in_the_exact_and_the_adjoint_pass():
    """With anchors at every step the adjoint is exact, masks included: the measured error is 0."""
    model = network(dropout=True).train()
    model[2].anchor_every = 1
    (error,) = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(),
                                       dict(named_stacks(model))).values()  # fmt: skip
    assert error.max < 1e-10


def test_generator_states_replay_the_same_draws_and_leave_the_generator_as_it_was():
    states = GeneratorStates.now(torch.device("cpu"))
    first = torch.rand(3)
    after = torch.get_rng_state()
    with states.active(torch.device("cpu")):
        assert torch.equal(torch.rand(3), first)
    assert torch.equal(torch.get_rng_state(), after)


# -- the monitor, in training -------------------------------------------------------------------


class StackNet(nn.Module):
    """3-channel 8x8 images → conv, BN → a residual stack of pre-activation blocks → pool, linear (4 classes)."""

    def __init__(self, depth: int, zero_residuals: bool = False, dropout: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        make = DropoutBlock if dropout else (lambda: conv_block(zero_init_last_bn=zero_residuals))
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.stack = ResidualStack([make() for _ in range(depth)], gradient="adjoint")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stack(self.stem(x)))


def fit(tmp_path, network: nn.Module, *callbacks, steps: int = 4, **options) -> ImageClassifier:
    model = ImageClassifier(network, num_classes=4, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    trainer(tmp_path, callbacks=list(callbacks), limit_train_batches=steps, limit_val_batches=0,
            **options).fit(model, RandomImages(batch_size=16))  # fmt: skip
    return model


def test_training_with_the_monitor_gives_bitwise_the_weights_and_statistics_of_training_without_it(tmp_path):
    """Dropout draws from the generators and BatchNorm moves statistics: the monitor disturbs neither."""
    without = fit(tmp_path / "a", StackNet(3, dropout=True)).network.state_dict()
    monitor = GradientErrorMonitor(every_n_steps=1, samples=8)
    model = fit(tmp_path / "b", StackNet(3, dropout=True), monitor)
    assert model.network.state_dict().keys() == without.keys()
    for name, tensor in model.network.state_dict().items():
        assert torch.equal(tensor, without[name]), name
    assert monitor.last_metrics["gradcheck/stack/median_relative_error"] > 0


def test_the_monitor_logs_each_adjoint_stacks_errors_every_n_steps(tmp_path):
    monitor = GradientErrorMonitor(every_n_steps=3, samples=8)
    fit(tmp_path, StackNet(3), monitor, steps=4, logger=CSVLogger(tmp_path, name="log", version=0))
    rows = (tmp_path / "log" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("gradcheck/stack/median_relative_error")
    steps = [row.split(",")[header.index("step")] for row in rows[1:] if row.split(",")[column]]
    assert steps == ["0", "3"]
    for measure in ("max_relative_error", "cosine_similarity", "reconstruction_error"):
        assert f"gradcheck/stack/{measure}" in header
    assert 0 < monitor.last_metrics["gradcheck/stack/median_relative_error"] <= monitor.last_metrics[
        "gradcheck/stack/max_relative_error"]  # fmt: skip


def test_a_shallow_stack_trained_from_scratch_falls_back_to_checkpointing(tmp_path, caplog):
    """Depth 2, residuals non-zero from the start: the adjoint's error is large (the paper's Fig. 3b)."""
    monitor = GradientErrorMonitor(every_n_steps=1, samples=16, fallback_threshold=0.05, patience=2)
    model = fit(tmp_path, StackNet(2), monitor, steps=4)
    assert model.network.stack.gradient == "checkpoint"
    assert monitor.switched == {"stack"}
    assert monitor.state_dict()["switched"] == ["stack"]
    assert "stack switches from the adjoint to gradient='checkpoint' at step 1: median relative gradient error" in (
        caplog.text
    )


def test_a_fallback_survives_resuming_from_a_checkpoint(tmp_path):
    monitor = GradientErrorMonitor(every_n_steps=1, samples=16, fallback_threshold=0.05, patience=1)
    model = ImageClassifier(StackNet(2), num_classes=4)
    first = trainer(tmp_path, callbacks=[monitor], limit_train_batches=1, limit_val_batches=0)
    first.fit(model, RandomImages(batch_size=16))
    assert model.network.stack.gradient == "checkpoint"
    first.save_checkpoint(tmp_path / "switched.ckpt")
    resumed = ImageClassifier(StackNet(2), num_classes=4)
    never = GradientErrorMonitor(every_n_steps=100, fallback_threshold=0.05, patience=1)
    trainer(tmp_path, callbacks=[never], max_epochs=2, limit_train_batches=1, limit_val_batches=0).fit(
        resumed, RandomImages(batch_size=16), ckpt_path=tmp_path / "switched.ckpt")  # fmt: skip
    assert resumed.network.stack.gradient == "checkpoint" and never.switched == {"stack"}


def test_zero_residuals_keep_the_adjoint(tmp_path):
    monitor = GradientErrorMonitor(every_n_steps=1, samples=16, fallback_threshold=0.05, patience=2)
    model = fit(tmp_path, StackNet(2, zero_residuals=True), monitor, steps=4)
    assert model.network.stack.gradient == "adjoint" and not monitor.switched
    assert monitor.last_metrics["gradcheck/stack/median_relative_error"] < 0.05


def test_a_fallen_back_stack_returns_to_the_adjoint_below_switch_back_below():
    monitor = GradientErrorMonitor(fallback_threshold=0.1, patience=2, fallback="backprop", switch_back_below=0.01)
    stack = ResidualStack([nn.Identity()], gradient="adjoint")
    modes = []
    for step, error in enumerate([0.5, 0.05, 0.5, 0.5, 0.05, 0.005, 0.5]):
        logged = monitor.decide("stack", stack, error, step)
        modes.append((stack.gradient, logged.get("gradcheck/stack/fallback")))
    assert modes == [
        ("adjoint", None), ("adjoint", None), ("adjoint", None), ("backprop", 1.0),  # two in a row above 0.1
        ("backprop", None), ("adjoint", 0.0), ("adjoint", None),  # back below 0.01, patience counts afresh
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every_n_steps": 0}, "every_n_steps=0, but it counts the training steps between checks"),
        ({"fallback": "adjoint"}, "fallback='adjoint' is not an exact gradient mode"),
        ({"fallback_threshold": 0.1, "switch_back_below": 0.2}, "switch_back_below=0.2 needs a fallback_threshold"),
    ],
)
def test_bad_monitor_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        GradientErrorMonitor(**options)


def test_the_monitor_is_configured_from_yaml_under_trainer_callbacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "monitor.yaml").write_text(
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: resnode_lightning.training.GradientErrorMonitor\n"
        "      init_args: {every_n_steps: 2, samples: 8, fallback_threshold: 0.5, patience: 2}\n"
    )
    cli = main([
        "fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml", "--config", "monitor.yaml",
        "--model.network.init_args.gradient", "adjoint", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    (monitor,) = [c for c in cli.trainer.callbacks if isinstance(c, GradientErrorMonitor)]
    assert (monitor.every_n_steps, monitor.samples, monitor.fallback_threshold) == (2, 8, 0.5)
    header = (tmp_path / "runs/quickstart/version_0/metrics.csv").read_text().splitlines()[0].split(",")
    for stage in range(4):
        assert f"gradcheck/stages.{stage}.stack/median_relative_error" in header


# -- resnode gradcheck --------------------------------------------------------------------------


def gradcheck(capsys, *args: str, config: tuple[str, ...] = ("--config", "quickstart.yaml")) -> tuple[str, dict]:
    with pytest.raises(SystemExit) as exit:
        main(["gradcheck", *config, "--samples", "8", *args])
    out = capsys.readouterr().out
    assert exit.value.code == 0, out
    folder = Path(out.split("Written: ")[1].split(",")[0]).parent
    return out, json.loads((folder / "gradcheck.json").read_text())


def test_gradcheck_runs_on_the_quickstart_config_and_writes_a_table_json_and_a_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out, results = gradcheck(capsys, "--depths", "[2, 4]")
    folder = tmp_path / "runs/gradcheck/quickstart/version_0"
    assert {p.name for p in folder.iterdir()} == {"gradcheck.txt", "gradcheck.json", "gradcheck.png"}
    assert (folder / "gradcheck.png").read_bytes()[:4] == b"\x89PNG"
    assert "inputs: one training batch of the config's data (DigitsDataModule), 8 samples" in out
    assert "euler median" in out and "heun max" in out and (folder / "gradcheck.txt").read_text() in out + "\n"
    assert [(row["depth"], row["scheme"]) for row in results["results"]] == [
        (2, "euler"), (2, "heun"), (4, "euler"), (4, "heun")]  # fmt: skip
    stacks = results["results"][2]["stacks"]
    assert set(stacks) == {f"stages.{i}.stack" for i in range(4)}
    assert "blocks.0.conv1.weight" in stacks["stages.2.stack"]["relative_errors"]
    assert "rounding level" in out  # as built, every residual is zero: the adjoint is exact


def tied_quickstart_weights(path: Path) -> None:
    """The quickstart's tied network with non-zero residuals: weights constant (so smooth) in depth."""
    model = resnode_cli(["--config", "quickstart.yaml"], run=False).model
    torch.manual_seed(0)
    with torch.no_grad():
        for _, stack in named_stacks(model.network):
            for name, parameter in stack.named_parameters():
                parameter.copy_(torch.randn_like(parameter) * (0.5 if "conv" in name else 1.0))
    torch.save(model.network.state_dict(), path)


def test_gradcheck_errors_shrink_with_depth_and_heun_beats_euler_on_weights_smooth_in_depth(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    tied_quickstart_weights(tmp_path / "tied.pt")
    _, results = gradcheck(capsys, "--ckpt_path", "tied.pt", "--depths", "[3, 6, 12]", "--output", "out")
    median = {(row["depth"], row["scheme"]): row["median"] for row in results["results"]}
    assert median[3, "euler"] > median[6, "euler"] > median[12, "euler"] > 0, median
    assert median[3, "heun"] > median[6, "heun"] > median[12, "heun"], median
    for depth in (3, 6, 12):
        assert median[depth, "heun"] < median[depth, "euler"] / 3, median
    assert results["weights"] == "tied.pt" and (tmp_path / "out" / "gradcheck.png").is_file()


def test_gradcheck_refuses_a_checkpoint_that_would_run_code_when_unpickled(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    class Malicious:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": Malicious()}, tmp_path / "evil.ckpt")
    with pytest.raises(SystemExit) as exit:
        main(["gradcheck", "--config", "quickstart.yaml", "--ckpt_path", "evil.ckpt", "--depths", "[2]"])
    assert exit.value.code == 2
    assert "holds objects other than tensors and plain containers, which are not loaded" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "runs").exists()


def test_gradcheck_takes_a_run_folder_or_its_saved_config_and_the_options_of_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["resnode"])
    main(["fit", "--config", "quickstart.yaml", "--config", "presets/debug.yaml",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    run = Path("runs/quickstart/version_0")
    capsys.readouterr()
    out, results = gradcheck(capsys, "--depths", "[2]", config=("--config", str(run)))  # the run's network and weights
    assert f"resnode gradcheck: {run / 'config.yaml'}; weights: {run / 'checkpoints' / 'best.ckpt'}" in out
    assert results["inputs"].startswith("one training batch of the config's data (DigitsDataModule)")
    out, _ = gradcheck(capsys, "--depths", "[2]", "--data.init_args.batch_size", "4",
                       "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                       config=("--config", str(run / "config.yaml")))  # fmt: skip
    assert "4 samples" in out and f"weights: {run / 'checkpoints' / 'last.ckpt'}" in out
    out, _ = gradcheck(capsys, "--depths", "[2]", "--ckpt_path", "last")  # the config's newest run's best weights
    assert f"weights: {run / 'checkpoints' / 'best.ckpt'}" in out


# -- under DDP ----------------------------------------------------------------------------------


class OtherRanksAbove:
    """A stand-in for a trainer whose strategy averages this rank's errors with ranks that see 0.9."""

    global_step, loggers = 0, []

    def __init__(self) -> None:
        self.strategy = self
        self.precision_plugin = self

    def train_step_context(self):
        return contextlib.nullcontext()

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "mean"
        return (tensor + 0.9) / 2


def test_the_fallback_decides_on_the_errors_averaged_over_the_ranks_not_on_this_ranks_own():
    model = ImageClassifier(StackNet(2, zero_residuals=True), num_classes=4)
    monitor = GradientErrorMonitor(every_n_steps=1, fallback_threshold=0.3, patience=1)
    data = RandomImages(batch_size=16)
    monitor.on_train_batch_start(OtherRanksAbove(), model, next(iter(data.loader())), 0)
    assert model.network.stack.gradient == "checkpoint"  # this rank's own error is 0: the mean, 0.45, decided
    assert monitor.last_metrics["gradcheck/stack/median_relative_error"] == pytest.approx(0.45)


class SaveGradientModes(Callback):
    """At the end of training, every rank writes its stacks' gradient modes as ``rank<k>.json``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        modes = {name: stack.gradient for name, stack in named_stacks(pl_module.network)}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(modes))


@pytest.mark.slow
def test_two_ddp_ranks_fall_back_at_the_same_step_and_keep_the_same_weights(tmp_path):
    from test_ddp import TANH_NET, assert_same_weights, fit

    monitor = ["--trainer.callbacks+=resnode_lightning.training.GradientErrorMonitor",
               "--trainer.callbacks.every_n_steps", "1", "--trainer.callbacks.samples", "8",
               "--trainer.callbacks.fallback_threshold", "1e-9", "--trainer.callbacks.patience", "2",
               "--trainer.callbacks+=test_diagnostics.SaveGradientModes",
               "--trainer.callbacks.folder", str(tmp_path / "modes")]  # fmt: skip
    # quickstart.yaml's `gradient: backprop` carries over to TanhStackNet's own `gradient` argument unless given
    ranks = fit(tmp_path, *TANH_NET, "--model.network.gradient", "adjoint", *monitor)
    assert_same_weights(ranks[0], ranks[1], rtol=0, atol=0)
    rows = (tmp_path / "runs/quickstart/version_0/metrics.csv").read_text().splitlines()
    logged = [dict(zip(rows[0].split(","), row.split(","))) for row in rows[1:]]
    switched = [row["step"] for row in logged if row.get("gradcheck/untied/fallback")]
    assert switched == ["1"]
    for rank in (0, 1):
        modes = json.loads((tmp_path / "modes" / f"rank{rank}.json").read_text())
        assert modes == {"untied": "checkpoint", "tied": "checkpoint"}


def test_gradcheck_without_the_data_uses_random_inputs_of_its_shape_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["gradcheck", "--config", "cifar_adjoint.yaml", "--data.root", "nowhere", "--depths", "[2]",
              "--samples", "4", "--output", "out"])  # fmt: skip
    out = capsys.readouterr().out
    assert "inputs: random inputs of shape [4, 3, 32, 32]: the config's data is not available (No CIFAR-10 data" in out
    assert json.loads((tmp_path / "out" / "gradcheck.json").read_text())["inputs"].startswith("random inputs")


# -- smoothness of the weights in depth ------------------------------------------------------------


def linear_stack(thetas: list[float]) -> ResidualStack:
    """A stack of 1x1 linear blocks whose one weight is θ_n."""
    blocks = [nn.Linear(1, 1, bias=False) for _ in thetas]
    with torch.no_grad():
        for block, theta in zip(blocks, thetas):
            block.weight.fill_(theta)
    return ResidualStack(blocks)


def test_depth_smoothness_is_the_largest_step_between_consecutive_blocks_weights():
    smoothness = depth_smoothness(linear_stack([1.0, 1.5, 1.75, 3.75]))
    assert smoothness.max_step == pytest.approx(2.0) and smoothness.mean_step == pytest.approx(2.75 / 3)
    assert smoothness.relative == pytest.approx(2.0 / 3.75)
    assert depth_smoothness(ResidualStack.tied(nn.Linear(4, 4), 8)).max_step == 0.0  # one θ for every step


@pytest.mark.parametrize("interpolation, shrinks", [("constant", 1), ("linear", 8)])
def test_deepening_keeps_the_largest_step_piecewise_constant_and_divides_it_by_the_depth_ratio_linearly(
    interpolation, shrinks
):
    torch.manual_seed(0)
    stack = ResidualStack(random_blocks(lambda: conv_block(4), 8))
    before = depth_smoothness(stack).max_step
    after = depth_smoothness(stack.deepen(64, interpolation)).max_step
    assert after == pytest.approx(before / shrinks, rel=0.15 if shrinks > 1 else 1e-12)
