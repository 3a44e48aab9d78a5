"""2-process CPU DDP against one process, for the simple ResNet trained with the adjoint.

Runs ``resnode fit --config cifar_adjoint.yaml --config presets/ddp_cpu.yaml`` on real CIFAR-10 in
fresh processes: one process on batch 2B, and 2 processes (gloo) on batch B each, the same total
batch and the same 2 CPU cores (each of the 2 processes gets 1 thread, the single one 2). The
step time and the step's peak memory come from the StepCost callback (``system/step_seconds``,
``system/peak_memory_mib`` of rank 0 in metrics.csv, first steps dropped). Prints images/s, the
ratio DDP/single, and rank 0's peak memory at two depths (flat in depth with the adjoint).

On CPU this measures the overhead of DDP (gradient all-reduce, process startup excluded), not a
speed-up: two processes share the same two cores that one process uses. On GPUs (one process per
device) the same command scales with the devices; that is still to be measured.

Usage: python benchmarks/ddp_throughput.py [--root .cache/cifar10-jpg] [--steps 12] [--depths 8 64]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from resnode_lightning.cli.runs import RUNS, versions

RESULTS = Path(__file__).resolve().parent / "results"
TOTAL_BATCH = 256
CORES = 2


def run(root: str, processes: int, depth: int, steps: int) -> dict[str, float]:
    """Median step time and peak memory of rank 0 for one `resnode fit` of ``steps`` steps."""
    folder = Path(tempfile.mkdtemp(prefix="resnode-ddp-"))
    command = [
        sys.executable, "-m", "resnode_lightning", "fit", "--config", "cifar_adjoint.yaml",
        "--config", "presets/ddp_cpu.yaml", "--trainer.devices", str(processes),
        "--data.root", str(Path(root).resolve()), "--data.batch_size", str(TOTAL_BATCH),
        "--model.network.depth", str(depth), "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
        "--checkpoint.save_top_k", "0", "--checkpoint.save_last", "false",
    ]  # fmt: skip
    threads = str(CORES // processes)
    environment = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{processes}-process run failed:\n{done.stderr[-3000:]}")
    metrics = versions(folder / RUNS / "cifar_adjoint")[-1] / "metrics.csv"
    rows = [row for row in csv.DictReader(metrics.open()) if row.get("system/step_seconds")]
    rows = rows[2:]  # the first steps warm up allocator and caches
    return {
        "step_seconds": statistics.median(float(row["system/step_seconds"]) for row in rows),
        "peak_memory_mib": max(float(row["system/peak_memory_mib"]) for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".cache/cifar10-jpg")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--depths", type=int, nargs=2, default=[8, 64], help="depth for throughput, deeper one")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        sys.exit(f"--root {args.root!r} is not a folder: unpack ../shared/data/cifar10-jpg.tar.gz into .cache/ first.")
    results: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):
        for processes in (1, 2):
            for depth in args.depths:
                key = f"{processes}x{depth}"
                results.setdefault(key, []).append(run(args.root, processes, depth, args.steps))
                print(f"round {round_ + 1}: {processes} process(es), depth {depth}: {results[key][-1]}", flush=True)
    median = {
        key: {m: statistics.median(r[m] for r in runs) for m in ("step_seconds", "peak_memory_mib")}
        for key, runs in results.items()
    }
    shallow, deep = args.depths
    single, ddp = median[f"1x{shallow}"], median[f"2x{shallow}"]
    ratio = single["step_seconds"] / ddp["step_seconds"]
    print(f"\nsimple ResNet, Heun, adjoint, total batch {TOTAL_BATCH}, {CORES} CPU cores:")
    for processes, row in ((1, single), (2, ddp)):
        print(f"  {processes} process(es), depth {shallow}: {TOTAL_BATCH / row['step_seconds']:7.1f} images/s")
    print(f"DDP throughput / one process = {ratio:.2f} (the same 2 cores: this is DDP's overhead, not a speed-up)")
    for processes in (1, 2):
        a, b = median[f"{processes}x{shallow}"], median[f"{processes}x{deep}"]
        growth = b["peak_memory_mib"] / a["peak_memory_mib"]
        print(f"  rank-0 peak memory, {processes} process(es): depth {shallow} {a['peak_memory_mib']:.0f} MiB, "
              f"depth {deep} {b['peak_memory_mib']:.0f} MiB ({growth:.2f}x)")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ddp_throughput.json").write_text(json.dumps({"runs": results, "median": median}, indent=2))


if __name__ == "__main__":
    main()
