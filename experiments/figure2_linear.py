"""Figure 2: linear ResNets trained by gradient flow converge to a function of depth, at rate 1/N.

A linear ResNet x ↦ Π^N x, Π^N = (I + θ_{N−1}/N) ⋯ (I + θ_0/N), fits a target B near the identity
(the paper's small-initial-loss assumption) under the loss ‖Π^N − B‖²_Σ, trained by the rescaled
gradient flow dθ_n/dt = −N ∇_{θ_n} L from θ = 0, for the same flow time at every depth N. The
paper's claim (Th. 1): s ↦ θ_{⌊Ns⌋} converges uniformly as N grows, at rate 1/N. Measured here:
sup_s ‖θ^N(s) − θ^{2N}(s)‖ for N = 4 .. 128, and the weights in depth.

    python experiments/figure2_linear.py          # about a minute on 2 CPU cores
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from results import figure_path, timed

from resnode_lightning.models import LinearResNet, train_by_gradient_flow, weights_in_depth

DEPTHS = (4, 8, 16, 32, 64, 128, 256)
DIM, FLOW_TIME, STEP = 3, 10.0, 0.05


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    """A target B near the identity and an input covariance Σ (seeded)."""
    generator = torch.Generator().manual_seed(0)
    target = torch.eye(DIM, dtype=torch.float64) + 0.4 * torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    a = torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    return target, a @ a.T / DIM + 0.5 * torch.eye(DIM, dtype=torch.float64)


def main() -> None:
    target, covariance = problem()
    with timed("figure2_linear") as record:
        weights = {
            depth: train_by_gradient_flow(
                LinearResNet(DIM, depth).double(), target, covariance, learning_rate=STEP, steps=int(FLOW_TIME / STEP)
            )  # fmt: skip
            for depth in DEPTHS
        }
        grid = {depth: weights_in_depth(w, DEPTHS[-1]) for depth, w in weights.items()}
        gaps = {depth: (grid[depth] - grid[2 * depth]).flatten(1).norm(dim=1).max().item() for depth in DEPTHS[:-1]}
        rates = {depth: gaps[depth] / gaps[2 * depth] for depth in DEPTHS[:-2]}
        record.update(
            claim="sup_s |theta^N(s) - theta^2N(s)| falls like 1/N (halves when N doubles)",
            depths=list(DEPTHS), flow_time=FLOW_TIME, sup_gap_to_2N=gaps, ratio_of_successive_gaps=rates,
            held=all(1.6 < r < 2.5 for r in rates.values()),
        )  # fmt: skip
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for depth in (4, 16, 64, 256):
            s = (torch.arange(depth) + 0.5) / depth
            left.step(s, weights[depth][:, 0, 0], where="mid", label=f"N = {depth}")
        left.set(xlabel="depth s = n / N", ylabel="θ_n[0, 0]", title="Weights as a function of depth")
        left.legend()
        right.loglog(list(gaps), list(gaps.values()), "o-", label="sup_s ‖θ^N(s) − θ^{2N}(s)‖")
        right.loglog(list(gaps), [gaps[DEPTHS[0]] * DEPTHS[0] / d for d in gaps], "k--", label="1/N")
        right.set(xlabel="N", title="Convergence in depth")
        right.legend()
        figure.suptitle("Figure 2: linear ResNets trained by gradient flow (d = 3, t = 10)")
        figure.tight_layout()
        figure.savefig(figure_path("figure2_linear"), dpi=120)
    print("ratios of successive gaps (2 = rate 1/N):", {d: round(r, 2) for d, r in rates.items()})


if __name__ == "__main__":
    main()
