"""Where the reproductions write: docs/results/<name>.json and .png, with the wall time they took."""

from __future__ import annotations

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
