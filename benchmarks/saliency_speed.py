"""How long `grokscope saliency` takes over the checkpoints of a run (issue 18: 50 checkpoints of the
canonical run in <= 60 s on a laptop CPU), against one full-split gradient of the same run, measured
in the same process.

    python benchmarks/saliency_speed.py RUN                  # a run of the canonical model (nanda2023)
    python benchmarks/saliency_speed.py RUN --checkpoints 50 --shapley 10

The verb runs as a user runs it (its defaults: 256 examples, 64 integration points, 2048 test
examples, 3 random deletions), written to a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from common import gradient_seconds, machine_line
from grokscope.analysis.saliency import saliency
from grokscope.run import load_run

BAR_S = 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--checkpoints", type=int, default=50)
    ap.add_argument("--shapley", type=int, default=0, help="also the Shapley values from this many orders")
    ap.add_argument("--ig-steps", type=int, default=64, help="integration points (the verb's default 64)")
    args = ap.parse_args()
    run = load_run(args.run)
    print(machine_line())
    print(f"run {args.run}: {run.task.describe()}, {len(run.steps)} checkpoints, torch threads {torch.get_num_threads()}")
    grad_s = gradient_seconds(run, run.steps[-1])
    print(f"{'one full-split gradient':34s} {grad_s:8.3f} s  (the baseline)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = saliency(run, checkpoints=args.checkpoints, shapley=args.shapley, ig_steps=args.ig_steps, out=tmp)
        took = time.perf_counter() - t0
    n = len(res.progress)
    bar = f"; bar {BAR_S:g} s: {'met' if took <= BAR_S else 'MISSED'}" if n >= 50 and not args.shapley else ""
    print(f"{f'saliency, {n} checkpoints':34s} {took:8.2f} s  = {took / grad_s:6.1f} gradients, {took / n:.2f} s per "
          f"checkpoint, {args.ig_steps} integration points{bar}"
          + (f" (Shapley from {args.shapley} orders included)" if args.shapley else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
