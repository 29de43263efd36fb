"""Trials per hour of a 16-trial sweep: the local backend against the trials one after another.

All in one run, on the same spec: x + y mod 31 (the canonical model, lr 3e-3), frac_train x
weight decay x 4 seeds, --epochs full-batch epochs each. "sequential" is what a user would do
without a sweep runner: `grokscope.train` per trial in one process with torch's default threads.
The local backend runs `--workers` processes with `--threads` threads each (default: one per
core). On CUDA, add --group 16 to stack the trials that share shapes into ensembles.

    python benchmarks/sweep_speed.py                   # 2 cores: 2 workers x 1 thread vs sequential
    python benchmarks/sweep_speed.py --workers 1 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine_line
from grokscope.sweeps import load_spec, run_sweep
from grokscope.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--group", type=int, default=None)
    args = ap.parse_args()
    spec = load_spec({"name": "sweep_speed", "set": {"task.p": 31, "optim.lr": 3e-3, "train.epochs": args.epochs,
                                                    "train.progress": False},
                      "grid": {"task.frac_train": [0.3, 0.5], "optim.weight_decay": [0.3, 1.0]}, "seeds": "0-3"})
    n = len(spec.trials)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for t in spec.trials:
            train(t.config, Path(tmp) / "seq" / t.id)
        seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_sweep(spec, Path(tmp) / "local", workers=args.workers, threads=args.threads, group=args.group,
                           progress=False)
        loc = time.perf_counter() - t0
    assert all(s == "done" for s in result.values()), result
    print(f"{n} trials of {args.epochs} epochs (x + y mod 31, frac_train x weight decay x 4 seeds)")
    print(f"sequential (grokscope.train one after another): {seq:6.1f} s, {n / seq * 3600:7.0f} trials/hour")
    print(f"local backend (workers {args.workers or 'auto'}, threads {args.threads or 'auto'}, group {args.group or 'auto'}): "
          f"{loc:6.1f} s, {n / loc * 3600:7.0f} trials/hour")
    print(f"ratio local / sequential: {seq / loc:.2f}x")


if __name__ == "__main__":
    main()
