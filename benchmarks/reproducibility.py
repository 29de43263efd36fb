"""How many distinct trajectories N fresh processes of one command give (issue 17).

Each process runs `grokscope train --preset PRESET --set train.epochs=EPOCHS` into its own folder
with the environment given: one after another by default, or --parallel K at a time (then they
compete for the cores, as runs on a loaded machine do). Two runs
have the same trajectory when their metrics (train and test loss at every logged step) are equal bit
for bit; the script prints the number of distinct ones, how many processes took each, the first
logged step where each differs from the first one, and each one's grokking step.

    python benchmarks/reproducibility.py                          # 20 processes of quick, 1500 epochs
    python benchmarks/reproducibility.py --env MKL_CBWR=COMPATIBLE  # a lead: MKL's reproducibility mode
    python benchmarks/reproducibility.py --parallel 2              # under load
    python benchmarks/reproducibility.py --parallel 2 --env MKL_DYNAMIC=FALSE
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from common import machine_line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every process")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--parallel", type=int, default=1, help="processes at a time (default 1: one after another)")
    args = ap.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    print(machine_line())
    print(f"{args.runs} processes of --preset {args.preset}, {args.epochs} epochs, {args.parallel} at a time; "
          f"env {args.env or 'as is'}")
    digests, curves, groks = [], [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"r{i}" for i in range(args.runs)]
        for start in range(0, args.runs, args.parallel):
            procs = [subprocess.Popen([sys.executable, "-m", "grokscope.cli", "train", "--preset", args.preset,
                                       "--set", f"train.epochs={args.epochs}", "--set", "train.progress=false",
                                       "--out", str(out), *sum((["--set", s] for s in args.set), [])],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for out in outs[start : start + args.parallel]]
            for p in procs:
                if p.wait() != 0:
                    raise SystemExit(f"a training process failed: {p.stderr.read().decode()[-2000:]}")
        for out in outs:
            m = pd.read_parquet(out / "metrics.parquet")
            digests.append(hashlib.sha256(m[["step", "train_loss", "test_loss"]].to_numpy().tobytes()).hexdigest()[:12])
            curves.append(m)
            hit = m.step[m.test_acc >= 0.99]
            groks.append(int(hit.iloc[0]) if len(hit) else None)
    counts = Counter(digests)
    print(f"distinct trajectories: {len(counts)} of {args.runs} processes ({time.perf_counter() - t0:.0f} s)")
    first = curves[0]
    for digest, n in counts.most_common():
        i = digests.index(digest)
        diff = (curves[i][["train_loss", "test_loss"]].to_numpy() != first[["train_loss", "test_loss"]].to_numpy()).any(1)
        where = f"first differs from process 0 at step {int(first.step[diff.argmax()])}" if diff.any() else "as process 0"
        print(f"  {digest}: {n} process(es), e.g. process {i}; {where}; grokking step {groks[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
