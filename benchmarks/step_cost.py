"""Cost of one training step (forward + backward) of the paper's "simple ResNet" stage.

A ResidualStack of N pre-activation basic blocks, 16 channels on 10x10 maps, batch 128, for every
gradient mode (backprop, checkpoint, adjoint), scheme (Euler, Heun) and tied/untied weights, side
by side in one run. Prints a table of median step time and peak step memory with their ratios
to backprop (same scheme, same tying, same depth), checks the targets of the core issue, and
writes JSON and a PNG plot to benchmarks/results/.

Each configuration runs in fresh subprocesses, one for time and one for memory:
- time: each configuration's steps alternate with steps of the same stack under backprop in the
  same process, so that both see the same machine (this 2-core VM varies by ±25 % between
  processes); the ratio to backprop is the median of the per-pair ratios over several rounds of
  fresh processes. Steps follow each other as in training, with malloc set to keep freed memory
  as PyTorch's caching allocator does on CUDA (CACHING_MALLOC; --system-malloc for glibc's
  defaults);
- memory (CPU): the resident-set high-water mark during one step minus the resident set just
  before it (VmHWM after a reset through /proc/self/clear_refs, minus VmRSS), in a process
  started with MALLOC_MMAP_THRESHOLD_=65536 so that every tensor of 64 KiB or more is mapped on
  allocation and returned to the system when freed: the resident set then follows live tensors
  instead of the allocator's free lists. On CUDA: torch.cuda.max_memory_allocated.

Usage: python benchmarks/step_cost.py [--depths 8 32 128 512] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("backprop", "checkpoint", "adjoint")
SCHEMES = ("euler", "heun")
TIMED_STEPS = {8: 5, 32: 4, 128: 3, 512: 2}  # timed pairs of steps per process, after a warm-up step
ROUNDS = {8: 2, 32: 2, 128: 6, 512: 2}  # time processes per configuration
# Processes differ by several per cent in a ratio measured in each: at N = 128 the time targets take
# the median of the pairs of 6 processes, and the floor's verdict prints the spread of their medians.
# Time workers keep freed memory in the process, as PyTorch's caching allocator does on CUDA:
# with glibc's defaults the adjoint's small, churning working set is handed back to the system
# after every step and page-faulted in again (measured: 64k faults and +40 % time per step at
# N = 128), while backprop's large one is not. --system-malloc measures with the defaults.
CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}

# Targets of the core issue, at N = 128 (time) and over depth (memory).
TIME_TARGETS = {("euler", False): 1.75, ("euler", True): 1.5, ("heun", False): 1.6, ("heun", True): 1.6}
FLOOR_MARGIN = 1.05  # adjoint step time over the time of its unavoidable work (floor_step), paired
MEMORY_FLATNESS = 1.2  # adjoint activation memory at N = 512 over N = 8
MEMORY_SHARE = 0.05  # adjoint step memory over backprop's at N = 128


# -- worker: one configuration, one measurement ------------------------------------------------
def build(depth: int, scheme: str, tied: bool, gradient: str, device: str):
    import torch

    from resnode_lightning.models.blocks import PreActBasicBlock
    from resnode_lightning.numerics import ResidualStack

    torch.manual_seed(0)
    if tied:
        stack = ResidualStack.tied(PreActBasicBlock(16), depth, scheme=scheme, gradient=gradient)
    else:
        blocks = [PreActBasicBlock(16) for _ in range(depth)]
        stack = ResidualStack(blocks, scheme=scheme, gradient=gradient)
    x = torch.randn(128, 16, 10, 10, device=device, requires_grad=True)  # the stem's output
    return stack.to(device), x


def train_step(stack, x) -> None:
    out = stack(x)
    out.square().mean().backward()
    x.grad = None
    for p in stack.parameters():
        p.grad = None


FLOOR_WORK = {("euler", False): (2, 1), ("euler", True): (1, 1), ("heun", False): (3, 2), ("heun", True): (3, 2)}
"""Per residual step of an adjoint training step, the evaluations of f without a graph (c) and
with one and its vector-Jacobian product (c' + u) that no implementation can avoid
(benchmarks/unit_costs.py): Euler c forward + c rebuild + (c' + u); tied Euler c + (c' + u); Heun
2c + c + 2(c' + u)."""


def floor_step(stack, x, scheme: str, tied: bool) -> None:
    """Exactly the unavoidable work of an adjoint step (:data:`FLOOR_WORK`) on the stack's own
    blocks and input, with nothing else: the time an ideal implementation would take."""
    import torch

    plain, differentiated = FLOOR_WORK[scheme, tied]
    cotangent = torch.ones_like(x)
    for block in stack.blocks:
        with torch.no_grad():
            for _ in range(plain):
                x.detach().add(block(x.detach()), alpha=stack.h)
        for _ in range(differentiated):
            state = x.detach().requires_grad_(True)
            out = state.add(block(state), alpha=stack.h)
            torch.autograd.grad(out, [state, *block.parameters()], cotangent)


def paired_times(stack, x, depth: int, scheme: str, tied: bool, device: str) -> dict:
    """Step times of the stack and, unless it is backprop, of the same stack under backprop and,
    for the adjoint, of its floor (:func:`floor_step`), steps alternating in this process: all
    see the same machine, whatever it is doing."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    contenders = [functools.partial(train_step, stack, x)]
    if stack.gradient != "backprop":
        baseline, _ = build(depth, scheme, tied, "backprop", device)
        train_step(baseline, x)
        contenders.append(functools.partial(train_step, baseline, x))
    if stack.gradient == "adjoint":
        contenders.append(functools.partial(floor_step, stack, x, scheme, tied))
        contenders[-1]()
    times: list[list[float]] = [[] for _ in contenders]
    timed = list(zip(contenders, times))
    for round_ in range(TIMED_STEPS.get(depth, 2)):
        # The order rotates from one round to the next, so that no contender always follows the same one.
        shift = round_ % len(timed)
        for step, record in timed[shift:] + timed[:shift]:
            sync()
            start = time.perf_counter()
            step()
            sync()
            record.append(time.perf_counter() - start)
    return {
        "steps": times[0],
        "baseline_steps": times[1] if len(times) > 1 else times[0],
        "floor_steps": times[2] if len(times) > 2 else [],
    }


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(depth: int, scheme: str, tied: bool, gradient: str, what: str, device: str) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    warm_stack, warm_x = build(4, scheme, tied, gradient, device)
    train_step(warm_stack, warm_x)  # first-call costs (kernel selection, thread pool) go here
    stack, x = build(depth, scheme, tied, gradient, device)
    gradient_bytes = sum(p.numel() * p.element_size() for p in stack.parameters())
    train_step(stack, x)
    if what == "time":
        return paired_times(stack, x, depth, scheme, tied, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        train_step(stack, x)
        peak = torch.cuda.max_memory_allocated() - before
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        before = resident_kib("VmRSS")
        train_step(stack, x)
        peak = (resident_kib("VmHWM") - before) * 1024
    return {"bytes": peak, "gradient_bytes": gradient_bytes}


# -- driver ------------------------------------------------------------------------------------
def run_worker(config: dict, what: str, device: str, system_malloc: bool = False) -> dict:
    env = dict(os.environ)
    if what == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    elif not system_malloc:
        env.update(CACHING_MALLOC)
    cmd = [sys.executable, __file__, "--worker", json.dumps({**config, "what": what, "device": device})]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {config} ({what}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(rows: list[dict], row: dict, key: str) -> float:
    base = next(r for r in rows if r["mode"] == "backprop" and all(
        r[k] == row[k] for k in ("depth", "scheme", "tied")))
    return row[key] / base[key]


def report(rows: list[dict]) -> list[str]:
    """Print the table and return the lines of the target check."""
    print(f"\n{'scheme':6} {'tied':5} {'mode':10} {'N':>4} {'step s':>8} {'x bp':>6} {'floor':>6} "
          f"{'mem MiB':>8} {'x bp':>6} {'act MiB':>8}")
    for r in rows:
        r["time_ratio"] = r["paired_ratio"]
        r["memory_ratio"] = ratio(rows, r, "bytes")
        r["activation_bytes"] = r["bytes"] - r["gradient_bytes"]
        floor = f"{r['floor_ratio']:6.2f}" if "floor_ratio" in r else f"{'':6}"
        print(f"{r['scheme']:6} {str(r['tied']):5} {r['mode']:10} {r['depth']:>4} {r['seconds']:8.3f} "
              f"{r['time_ratio']:6.2f} {floor} {r['bytes'] / 2**20:8.1f} {r['memory_ratio']:6.3f} "
              f"{r['activation_bytes'] / 2**20:8.1f}")
    checks = []
    depths = sorted({r["depth"] for r in rows})
    for (scheme, tied), target in TIME_TARGETS.items():
        r = find(rows, scheme, tied, "adjoint", 128)
        if r:
            checks.append(verdict(f"time {scheme} {'tied' if tied else 'untied'} adjoint/backprop at N=128",
                                  r["time_ratio"], target))
            if "over_floor" in r:
                name = f"time {scheme} {'tied' if tied else 'untied'} adjoint/its floor at N=128"
                spread = r.get("over_floor_per_process") or [r["over_floor"]]
                checks.append(verdict(f"{name} (floor {r['floor_ratio']:.2f} x backprop, paired; "
                                      f"{min(spread):.3f}-{max(spread):.3f} over {len(spread)} processes)",
                                      r["over_floor"], FLOOR_MARGIN))
    for scheme, tied in itertools.product(SCHEMES, (False, True)):
        low, high = find(rows, scheme, tied, "adjoint", depths[0]), find(rows, scheme, tied, "adjoint", depths[-1])
        if low and high and low is not high:
            checks.append(verdict(
                f"memory {scheme} {'tied' if tied else 'untied'} adjoint activations N={depths[-1]} / N={depths[0]}",
                high["activation_bytes"] / low["activation_bytes"], MEMORY_FLATNESS))
        r = find(rows, scheme, tied, "adjoint", 128)
        if r:
            checks.append(verdict(f"memory {scheme} {'tied' if tied else 'untied'} adjoint/backprop at N=128",
                                  r["memory_ratio"], MEMORY_SHARE))
    print("\nTargets:")
    for line in checks:
        print("  " + line)
    return checks


def find(rows, scheme, tied, mode, depth):
    return next((r for r in rows if (r["scheme"], r["tied"], r["mode"], r["depth"]) == (scheme, tied, mode, depth)),
                None)


def verdict(name: str, value: float, limit: float) -> str:
    return f"{'met   ' if value <= limit else 'MISSED'} {name}: {value:.3f} (target <= {limit})"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {"backprop": "tab:red", "checkpoint": "tab:orange", "adjoint": "tab:blue"}
    for scheme, tied, mode in itertools.product(SCHEMES, (False, True), MODES):
        sel = sorted((r for r in rows if (r["scheme"], r["tied"], r["mode"]) == (scheme, tied, mode)),
                     key=lambda r: r["depth"])
        if not sel:
            continue
        style = dict(color=colors[mode], linestyle="-" if scheme == "euler" else "--",
                     marker="o" if tied else "s", label=f"{mode} {scheme} {'tied' if tied else 'untied'}")
        depth = [r["depth"] for r in sel]
        ax_time.plot(depth, [r["seconds"] for r in sel], **style)
        ax_mem.plot(depth, [r["bytes"] / 2**20 for r in sel], **style)
    for ax, label in ((ax_time, "median step time (s)"), (ax_mem, "peak step memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_mem.legend(fontsize=7, ncol=2)
    fig.suptitle("One training step of a 16-channel pre-activation stack, 10x10 maps, batch 128")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--tied", nargs="+", default=["untied", "tied"], choices=["untied", "tied"])
    parser.add_argument("--quick", action="store_true", help="depths 8 and 128 only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--system-malloc", action="store_true", help="time with glibc's default malloc settings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        config = json.loads(args.worker)
        what, device = config.pop("what"), config.pop("device")
        print(json.dumps(measure(**config, what=what, device=device)))
        return
    depths = [8, 128] if args.quick else args.depths
    modes = sorted(set(args.modes) | {"backprop"}, key=MODES.index)
    groups = list(itertools.product(depths, args.schemes, args.tied))
    rows = []
    for i, (depth, scheme, tied) in enumerate(groups, 1):
        started = time.perf_counter()
        configs = [dict(depth=depth, scheme=scheme, tied=tied == "tied", gradient=m) for m in modes]
        steps: dict[str, list[float]] = {m: [] for m in modes}
        baseline: dict[str, list[float]] = {m: [] for m in modes}
        floor: dict[str, list[float]] = {m: [] for m in modes}
        process_ratios: dict[str, list[float]] = {m: [] for m in modes}  # adjoint over floor, per process
        for _ in range(ROUNDS.get(depth, 1)):
            for config in configs:
                if config["gradient"] == "backprop" and len(configs) > 1:
                    continue  # timed beside every other mode, as their baseline
                timed = run_worker(config, "time", args.device, args.system_malloc)
                steps[config["gradient"]] += timed["steps"]
                baseline[config["gradient"]] += timed["baseline_steps"]
                floor[config["gradient"]] += timed["floor_steps"]
                if timed["floor_steps"]:
                    process_ratios[config["gradient"]].append(
                        statistics.median(a / b for a, b in zip(timed["steps"], timed["floor_steps"]))
                    )
        if len(configs) > 1:
            steps["backprop"] = baseline["backprop"] = [t for m in modes[1:] for t in baseline[m]]
        for config in configs:
            memory = run_worker(config, "memory", args.device)
            mode = config.pop("gradient")
            pairs = [a / b for a, b in zip(steps[mode], baseline[mode])]
            over_floor = [a / b for a, b in zip(steps[mode], floor[mode])]
            rows.append({**config, "mode": mode, "seconds": statistics.median(steps[mode]),
                         "baseline_seconds": statistics.median(baseline[mode]),
                         "paired_ratio": statistics.median(pairs), "steps": steps[mode], **memory,
                         **({"floor_ratio": statistics.median([f / b for f, b in zip(floor[mode], baseline[mode])]),
                             "over_floor": statistics.median(over_floor),
                             "over_floor_per_process": process_ratios[mode]} if floor[mode] else {})})
        summary = ", ".join(
            f"{r['mode']} {r['seconds']:.3f} s {r['bytes'] / 2**20:.0f} MiB" for r in rows[-len(modes):]
        )
        print(f"[{i}/{len(groups)}] N={depth} {scheme} {tied}: {summary} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    checks = report(rows)
    if args.device == "cpu":
        print("\nUnit costs and the floors they set (benchmarks/unit_costs.py):")
        floors = subprocess.run([sys.executable, str(Path(__file__).with_name("unit_costs.py"))],
                                env={**os.environ, **CACHING_MALLOC}, capture_output=True, text=True, check=True)
        print(floors.stdout.rstrip())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_cost.json").write_text(json.dumps({"rows": rows, "targets": checks}, indent=1))
    plot(rows, RESULTS / "step_cost.png")
    print(f"\nwrote {RESULTS / 'step_cost.json'} and {RESULTS / 'step_cost.png'}")


if __name__ == "__main__":
    main()
