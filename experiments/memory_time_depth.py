"""Memory and time of one training step against depth: backprop, checkpointing and the adjoint, Euler and
Heun, tied and untied (the core benchmark, `benchmarks/step_cost.py`, which `make bench` runs).

The paper's claim: the adjoint's activation memory does not grow with depth (backprop's grows as N,
checkpointing's as √N), for about one more forward pass of time. Measured on the paper's simple
ResNet stage (16 channels, 10x10 maps, batch 128), each configuration in fresh processes.

    python experiments/memory_time_depth.py [step_cost.py options]   # ~33 min alone on 2 cores (all depths)

Writes docs/results/memory_time_depth.{json,png}: step_cost.py's rows, its target checks, the wall time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from results import figure_path, timed

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def main() -> None:
    with timed("memory_time_depth") as record:
        subprocess.run([sys.executable, str(BENCHMARKS / "step_cost.py"), *sys.argv[1:]], check=True)
        measured = json.loads((BENCHMARKS / "results" / "step_cost.json").read_text())
        record["setting"] = "benchmarks/step_cost.py " + " ".join(sys.argv[1:])
        record.update(targets=measured["targets"], rows=measured["rows"])
        shutil.copyfile(BENCHMARKS / "results" / "step_cost.png", figure_path("memory_time_depth"))


if __name__ == "__main__":
    main()
