"""Figure 1: a deep 1-D ResNet learning x ↦ x has ordered trajectories; learning x ↦ −x, they cross.

The flow of a 1-D ODE keeps the order of its inputs, so it cannot map x to −x; a ResNet
x_{n+1} = x_n + h f_n(x_n) with h = 1/N can, only by trajectories that cross (then it is no
discretisation of an ODE). Each map is fitted at depths 8 .. 64 (the paper shows 300; here: the
deepest that trains to a small loss within the budget is plotted, and every depth is reported).

The verdict counts every run: a fit that did not train (loss >= TRAINED) cannot support the claim, so
"held" is true only if every fit trained and, among them, trajectories cross exactly for x -> -x. The JSON
also says how many fits trained per map and whether the crossing claim held among the trained ones.

    python experiments/figure1_scalar.py          # about 25 s on 2 CPU cores (one seed, 0)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from results import figure_path, timed

from resnode_lightning.models import ScalarResNet, fit_scalar_map, trajectories_cross

DEPTHS = (8, 16, 32, 64)
TRAINED = 1e-3  # mean squared error below which a fit counts as trained
TARGETS = {"x -> x": 1.0, "x -> -x": -1.0}


def fit(depth: int, sign: float) -> tuple[float, torch.Tensor]:
    """The final loss and the (N + 1, B) trajectories of a ScalarResNet fitted to x ↦ sign · x."""
    torch.manual_seed(0)
    model = ScalarResNet(depth=depth, width=8).double()
    x = torch.linspace(-1, 1, 21, dtype=torch.float64)[:, None]
    loss = fit_scalar_map(model, lambda v: sign * v, x, learning_rate=0.03, steps=600)
    with torch.no_grad():
        return loss, model.trajectory(x)


def main() -> None:
    with timed("figure1_scalar") as record:
        runs = {(name, depth): fit(depth, sign) for name, sign in TARGETS.items() for depth in DEPTHS}
        record["claim"] = "x -> x: trajectories never cross; x -> -x: they must cross"
        record["runs"] = [
            {"target": name, "depth": depth, "loss": loss, "trained": loss < TRAINED,
             "trajectories_cross": trajectories_cross(trajectory)}
            for (name, depth), (loss, trajectory) in runs.items()
        ]  # fmt: skip
        trained = [run for run in record["runs"] if run["trained"]]
        record["seeds"] = [0]
        record["fits_trained"] = {
            name: {"trained": sum(r["trained"] for r in record["runs"] if r["target"] == name),
                   "runs": sum(r["target"] == name for r in record["runs"])}
            for name in TARGETS
        }  # fmt: skip
        record["crossing_held_among_trained"] = bool(trained) and all(
            run["trajectories_cross"] == (run["target"] == "x -> -x") for run in trained
        )
        # Every run counts: a fit that did not train cannot support the claim.
        record["held"] = len(trained) == len(record["runs"]) and record["crossing_held_among_trained"]
        failed = [f"{r['target']} at N = {r['depth']}" for r in record["runs"] if not r["trained"]]
        record["verdict"] = (
            f"{'held' if record['held'] else 'not held'}: {len(trained)} of {len(record['runs'])} fits trained "
            f"(loss < {TRAINED:g}); did not train: {', '.join(failed) or 'none'}; among the trained fits the "
            f"crossing claim {'held' if record['crossing_held_among_trained'] else 'did not hold'}"
        )
        figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for axis, name in zip(axes, TARGETS):
            depth = max((r["depth"] for r in trained if r["target"] == name), default=DEPTHS[0])
            loss, trajectory = runs[name, depth]
            axis.plot(torch.arange(depth + 1) / depth, trajectory, color="tab:blue", linewidth=0.8)
            axis.set(title=f"{name}, N = {depth} (loss {loss:.1e})", xlabel="depth s = n / N")
        axes[0].set_ylabel("x_n")
        figure.suptitle("Figure 1: trajectories of a 1-D ResNet (h = 1/N)")
        figure.tight_layout()
        figure.savefig(figure_path("figure1_scalar"), dpi=120)
    for run in record["runs"]:
        print(run)
    print(record["verdict"])


if __name__ == "__main__":
    main()
