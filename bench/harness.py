"""Shared measurement for the benchmarks: each side runs in its own fresh process.

A benchmark script defines ``make_side(side, args) -> run(steps) -> tensor`` and calls
:func:`worker_main` when started with ``--worker``; the driver calls :func:`run_side` per side and
measure, then :func:`print_comparison`. Time and memory come from separate processes: the memory
one samples RSS from a thread every ~2 ms with glibc's malloc thresholds fixed (so RSS follows
live memory), either of which would slow a timed run. Only the standard library and torch are
needed here, so the torchange side can run in its own interpreter.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

MEMORY_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "0"}


def _rss() -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page


class PeakRSS:
    """Highest resident set size while the ``with`` block runs, sampled every ~2 ms (Linux)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _busy_cpu_seconds() -> float:
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _fix_malloc_thresholds() -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker_main(
    run: Callable[[int], torch.Tensor], steps: int, measure: str, repeats: int, out: Path, device: str = "cpu"
) -> None:
    """Warm up with 1 step, then time ``repeats`` N-step runs (fastest kept) or measure the peak
    memory of one; save the output tensor to ``out`` and print one JSON line."""
    cuda = torch.device(device).type == "cuda"
    run(1)
    if measure == "time":
        seconds, other = [], 0.0
        for _ in range(repeats):
            busy, own = _busy_cpu_seconds(), _own_cpu_seconds()
            start = time.perf_counter()
            run(steps)
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            other += max(0.0, (_busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own))
        share = other / (sum(seconds) * (os.cpu_count() or 1))
        result = {"s_per_step": min(seconds) / steps, "other_cpu_share": share, "other_cpu_s": other}
    else:
        _fix_malloc_thresholds()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            cuda_before = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            output = run(steps)
            if cuda:
                torch.cuda.synchronize()
        torch.save(output.detach().float().cpu(), out)
        result = {"peak_rss_mb": (rss.peak - rss.before) / 2**20, "rss_before_mb": rss.before / 2**20}
        if cuda:
            result["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2**20
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result), flush=True)


def run_side(python: str, script: Path, options: dict, measure: str) -> dict:
    """Run ``script --worker ...`` with ``python`` in a fresh process and return its JSON line."""
    command = [python, str(script), "--measure", measure]
    command += [str(item) for pair in options.items() for item in pair]
    env = {**MEMORY_MALLOC_ENV, **os.environ} if measure == "memory" else None
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed (exit code {done.returncode}); its output:\n{done.stdout}")
    return json.loads(lines[-1])


def measure_sides(
    script: Path, sides: dict[str, str], options: dict, out_dir: Path, memory_runs: int = 1, time_runs: int = 1
) -> dict[str, dict]:
    """Time, then memory-profile, each side (``name -> interpreter``) in fresh processes; each
    worker saves its output to ``out_dir/<name>.pt``.

    ``time_runs > 1`` alternates the sides' timing processes (A, B, A, B, ...) and keeps each side's
    fastest, so a burst of outside load cannot land on one side only. ``memory_runs > 1`` keeps the
    lowest of that many peaks: sampling only ever adds transient spikes (freed temporaries the
    2 ms sampler happened to catch), so the minimum is the steadiest estimate."""
    results: dict[str, dict] = {side: {} for side in sides}
    side_options = {side: {"--worker": side, "--out": out_dir / f"{side}.pt", **options} for side in sides}
    timings: dict[str, list[dict]] = {side: [] for side in sides}
    for run in range(time_runs):  # time_runs=0: memory only (the caller times the sides itself)
        for side, python in sides.items():
            print(f"{side}: time {run + 1}/{time_runs} ...", flush=True)
            timings[side].append(run_side(python, script, side_options[side], "time"))
    for side, python in sides.items():
        if timings[side]:
            results[side] = min(timings[side], key=lambda r: r["s_per_step"])
            results[side]["s_per_step_runs"] = [round(r["s_per_step"], 4) for r in timings[side]]
        print(f"{side}: memory x{memory_runs} ...", flush=True)
        runs = [run_side(python, script, side_options[side], "memory") for _ in range(memory_runs)]
        results[side].update(min(runs, key=lambda r: r["peak_rss_mb"]))
        results[side]["peak_rss_runs_mb"] = [round(r["peak_rss_mb"], 1) for r in runs]
    return results


def ratio_line(name: str, ours: float, reference: float, goal: float = 1.0) -> str:
    ratio = ours / reference if reference > 0 else float("inf")
    return f"{name} ratio (ours/reference): {ratio:.3f}  goal <= {goal}"


def print_comparison(title: str, ours: dict, reference: dict, unit: str = "s/step", goal: float = 1.0) -> None:
    """Print both sides, the time and memory ratios, and a warning when the machine was busy."""
    print(f"\n{title}")
    print(f"{'':<22}{'ours':>12}{'reference':>12}")
    print(f"{unit:<22}{ours['s_per_step']:>12.4f}{reference['s_per_step']:>12.4f}")
    print(f"{'peak RSS MB (run)':<22}{ours['peak_rss_mb']:>12.1f}{reference['peak_rss_mb']:>12.1f}")
    if "peak_cuda_mb" in ours:
        print(f"{'peak CUDA MB (run)':<22}{ours['peak_cuda_mb']:>12.1f}{reference['peak_cuda_mb']:>12.1f}")
    print(f"{'RSS before run MB':<22}{ours['rss_before_mb']:>12.1f}{reference['rss_before_mb']:>12.1f}")
    print(ratio_line(f"time ({unit})", ours["s_per_step"], reference["s_per_step"], goal))
    print(ratio_line("peak memory (RSS)", ours["peak_rss_mb"], reference["peak_rss_mb"], goal))
    if "peak_cuda_mb" in ours:
        print(ratio_line("peak memory (CUDA)", ours["peak_cuda_mb"], reference["peak_cuda_mb"], goal))
    busy = max(ours["other_cpu_share"], reference["other_cpu_share"])
    # /proc/stat counts 10 ms ticks: ignore the odd tick on sub-second runs.
    if busy > 0.05 and max(ours["other_cpu_s"], reference["other_cpu_s"]) > 0.5:
        print(f"warning: other processes used up to {busy:.0%} of the CPUs while timing; rerun on an idle machine")


def add_worker_args(parser) -> None:
    parser.add_argument("--worker", help="internal: run one side")
    parser.add_argument("--measure", choices=("time", "memory"), default="time", help="internal")
    parser.add_argument("--out", help="internal: where the worker saves its output")
    parser.add_argument("--model-dir", help="internal: the shared random model")


if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
