"""Where the reproductions write: docs/results/<name>.json and .png, with the wall time they took."""

from __future__ import annotations

import csv
import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


@contextmanager
def timed(name: str):
    """Yields a dict to fill with the experiment's numbers; writes it as docs/results/<name>.json with
    the wall time and the machine, and prints where it went."""
    record: dict = {}
    started = time.perf_counter()
    yield record
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    record["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))
    print(f"{name}: {record['wall_seconds']} s; wrote {RESULTS / name}.json and .png")


def figure_path(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def validation_curve(run_folder: Path) -> list[float]:
    """Validation top-1 accuracy after each epoch, from a run folder's metrics.csv (CSVLogger; none yet
    for a run stopped before its logger first wrote)."""
    if not (run_folder / "metrics.csv").is_file():
        return []
    rows = csv.DictReader((run_folder / "metrics.csv").open())
    return [float(row["val/acc1"]) for row in rows if row.get("val/acc1")]


def best_accuracy(run_folder: Path) -> float:
    """The best validation top-1 accuracy of a run."""
    return max(validation_curve(run_folder))


def monitored_errors(run_folder: Path, stack: str) -> list[tuple[int, float, float]]:
    """(step, median relative error, cosine similarity) of a stack's adjoint gradients at each check
    GradientErrorMonitor logged into a run folder's metrics.csv (``gradcheck/<stack>/...``)."""
    key = f"gradcheck/{stack}/"
    return [
        (int(row["step"]), float(row[key + "median_relative_error"]), float(row[key + "cosine_similarity"]))
        for row in csv.DictReader((run_folder / "metrics.csv").open())
        if row.get(key + "median_relative_error")
    ]
