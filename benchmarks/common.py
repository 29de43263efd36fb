"""Shared by the benchmark scripts: the machine line printed beside every figure, and a per-op profile."""

from __future__ import annotations

import time
from typing import Callable

import torch

from grokscope.cpu import describe_machine

MAX_OP_SHARE = 0.30  # docs/engine.md: no single op should take more than this share of a training step


def machine_line() -> str:
    return f"machine: {describe_machine()}"


def gradient_seconds(run, step: int, repeats: int = 3) -> float:
    """Seconds for one full-split gradient of a run's training loss at `step` (after a warm-up): the
    baseline the analysis benchmarks divide by, so their ratios carry over between machines."""
    f = run.loss_fn("train")
    p = {k: v.requires_grad_(True) for k, v in run.stacked_params(step).items()}
    f(p).sum().backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        f(p).sum().backward()
    return (time.perf_counter() - t0) / repeats


def op_profile(step: Callable[[], None], steps: int, top: int = 12) -> str:
    """Run `step` `steps` times under torch.profiler and return a table of the ops with the most self
    CPU time per step: ms, share of the step's wall time, calls, and the input shapes of the top
    call sites. Ops above MAX_OP_SHARE are marked, so a regression on a new CPU shows at once."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - t0) / steps
    by_op = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    by_shape = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    lines = [f"per-op profile, {steps} steps: {wall * 1e3:.1f} ms per step (wall, profiler on)",
             f"{'op':34s} {'ms/step':>8s} {'share':>6s} {'calls':>6s}  top input shapes"]
    worst = 0.0
    for e in by_op[:top]:
        ms = e.self_cpu_time_total / 1e3 / steps
        share = ms / (wall * 1e3)
        worst = max(worst, share)
        shapes = [str(s.input_shapes) for s in by_shape if s.key == e.key][:2]
        mark = "  <-- above 30% of the step" if share > MAX_OP_SHARE else ""
        lines.append(f"{e.key[:34]:34s} {ms:8.2f} {share:6.1%} {e.count / steps:6.1f}  {'; '.join(shapes)[:90]}{mark}")
    lines.append(f"largest single op: {worst:.1%} of the step (bar: <= {MAX_OP_SHARE:.0%})")
    return "\n".join(lines)
