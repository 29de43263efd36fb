"""How long each landscape verb takes on one checkpoint of a run (issue 14), against the bars of the
issue and against one full-split gradient of the same loss, measured in the same process.

    python benchmarks/landscape_speed.py RUN                 # a run of the canonical model (nanda2023)
    python benchmarks/landscape_speed.py RUN --step 1500 --chains 4

Each verb is timed once, as a user runs it: the top-20 Hessian eigenvalues (bar 30 s on the
canonical model), the Hutchinson trace from 10 probes, the LLC with 4 chains at the verb's defaults
(bar 20 s), the linear path plus a trained Bezier curve between the first checkpoint and this one, a
2D slice (--grid points a side), and the circuit walk between the run's two main circuits (an
analysed run; --grid points, its default relaxation).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from common import gradient_seconds, machine_line
from grokscope.analysis.landscape import estimate_llc, hessian
from grokscope.analysis.landscape.circuits import circuit_walk
from grokscope.analysis.landscape.connectivity import connect_runs
from grokscope.analysis.landscape.slices import run_slice
from grokscope.config import ConfigError
from grokscope.run import load_run

BARS = {"top-20 eigenvalues": 30.0, "LLC, 4 chains": 20.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--step", type=int, help="checkpoint (default the last)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--grid", type=int, default=11, help="points per axis of the 2D slice and of the circuit walk")
    ap.add_argument("--relax-steps", type=int, default=50, help="the circuit walk's relaxation steps (its default)")
    ap.add_argument("--skip", nargs="*", default=[], choices=("hessian", "trace", "llc", "connect", "slice", "circuits"))
    args = ap.parse_args()
    run = load_run(args.run)
    step = args.step if args.step is not None else run.steps[-1]
    n_params = sum(v.numel() for v in run.params(step).values())
    print(machine_line())
    print(f"run {args.run}: {run.task.describe()}, {n_params:,} parameters, step {step}, torch threads {torch.get_num_threads()}")
    grad_s = gradient_seconds(run, step)
    print(f"{'one full-split gradient':28s} {grad_s:8.3f} s  (the baseline)")

    def report(name: str, seconds: float, extra: str) -> None:
        bar = f"; bar {BARS[name]:g} s: {'met' if seconds <= BARS[name] else 'MISSED'}" if name in BARS else ""
        print(f"{name:28s} {seconds:8.2f} s  = {seconds / grad_s:6.1f} gradients{bar}; {extra}")

    if "hessian" not in args.skip:
        c = hessian(run, step, k=args.k)
        report(f"top-{args.k} eigenvalues", c.seconds, f"{c.n_hvp} Hessian-vector products, "
               f"lambda_1..3 {', '.join(f'{e:.4g}' for e in c.eigenvalues[:3])}")
    if "trace" not in args.skip:
        c = hessian(run, step, k=1, lanczos_steps=1, trace_samples=10)
        report("trace, 10 probes", c.seconds, f"{c.trace:.4g} +- {c.trace_se:.2g}")
    if "llc" not in args.skip:
        e = estimate_llc(run, step, chains=args.chains)
        s = e.settings
        report(f"LLC, {args.chains} chains", e.seconds, f"{e.llc:.4g} +- {e.llc_std:.2g} ({s['burn_in']} + {s['draws']} "
               f"steps, batch {s['batch_size']}, eps {s['eps']:g}, gamma {s['gamma']:g}; diverged {e.diverged or 'none'})")
    if "connect" not in args.skip:
        con = connect_runs(run, run.steps[0], step, steps=args.curve_steps)
        report("connect (line + Bezier)", con.seconds, f"barriers {con.linear_barrier:.4g} / {con.bezier_barrier:.4g}, "
               f"{args.curve_steps} curve steps")
    if "slice" not in args.skip:
        t0 = time.perf_counter()
        res = run_slice(run, "2d", step, grid=args.grid)
        report(f"2D slice, {args.grid}x{args.grid}", time.perf_counter() - t0,
               f"loss {res['surface']['loss'].min():.3g} to {res['surface']['loss'].max():.3g}")
    if "circuits" not in args.skip:
        try:
            w = circuit_walk(run, step=step, points=args.grid, relax_steps=args.relax_steps)
        except ConfigError as err:  # no circuits to name (a run not analysed, or a task without them)
            print(f"{'circuit walk':28s} skipped: {err}")
        else:
            report(f"circuit walk {w.a} / {w.b}", w.seconds, f"{args.grid} points, {args.relax_steps} relaxation steps, "
                   f"sloped canyon: {w.verdict['sloped_canyon']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
