"""How many distinct trajectories N fresh processes of one command give, and what deterministic mode costs (issue 17).

Each process runs `grokscope train --preset PRESET --set train.epochs=EPOCHS` into its own folder
with the environment given: one after another by default, or --parallel K at a time (then they
compete for the cores, as runs on a loaded machine do). With `--modes default deterministic` the
processes alternate between the default numerics and `train.deterministic=true`, so both modes see
the same machine conditions, and the script prints the time ratio measured in this run. Two runs
have the same trajectory when their metrics (train and test loss at every logged step) are equal bit
for bit; the script prints, per mode, the number of distinct ones, how many processes took each, the
first logged step where each differs from the mode's first process, and each one's grokking step.

    python benchmarks/reproducibility.py                                 # 20 processes of quick, 1500 epochs
    python benchmarks/reproducibility.py --modes default deterministic   # both modes, and the speed cost
    python benchmarks/reproducibility.py --parallel 2                     # under load
    python benchmarks/reproducibility.py --env MKL_CBWR=COMPATIBLE        # MKL's cross-CPU mode
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from common import machine_line

MODES = {"default": [], "deterministic": ["--set", "train.deterministic=true"]}


def _trajectory(out: Path) -> tuple[str, pd.DataFrame, int | None]:
    """(digest of the losses at every logged step, the metrics, the first step with test_acc >= 0.99)."""
    m = pd.read_parquet(out / "metrics.parquet")
    digest = hashlib.sha256(m[["step", "train_loss", "test_loss"]].to_numpy().tobytes()).hexdigest()[:12]
    hit = m.step[m.test_acc >= 0.99]
    return digest, m, int(hit.iloc[0]) if len(hit) else None


def _report(mode: str, runs: list[tuple[str, pd.DataFrame, int | None]], seconds: list[float]) -> None:
    digests = [d for d, _, _ in runs]
    counts = Counter(digests)
    print(f"{mode}: distinct trajectories {len(counts)} of {len(runs)} processes; "
          f"median {statistics.median(seconds):.2f} s per process")
    first = runs[0][1]
    for digest, n in counts.most_common():
        i = digests.index(digest)
        diff = (runs[i][1][["train_loss", "test_loss"]].to_numpy() != first[["train_loss", "test_loss"]].to_numpy()).any(1)
        where = f"first differs from process 0 at step {int(first.step[diff.argmax()])}" if diff.any() else "as process 0"
        print(f"  {digest}: {n} process(es), e.g. process {i}; {where}; grokking step {runs[i][2]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="processes per mode")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=["default"])
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every process")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--parallel", type=int, default=1, help="processes at a time (default 1: one after another)")
    ap.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary folder)")
    args = ap.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    print(machine_line())
    print(f"{args.runs} processes per mode ({', '.join(args.modes)}, alternating) of --preset {args.preset}, "
          f"{args.epochs} epochs, {args.parallel} at a time; env {args.env or 'as is'}")
    jobs = [(mode, i) for i in range(args.runs) for mode in args.modes]
    seconds: dict[str, list[float]] = {m: [] for m in args.modes}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        out = {job: root / f"{job[0]}{job[1]}" for job in jobs}
        for start in range(0, len(jobs), args.parallel):
            batch = jobs[start : start + args.parallel]
            began = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "grokscope.cli", "train", "--preset", args.preset,
                                       "--set", f"train.epochs={args.epochs}", "--set", "train.progress=false",
                                       "--out", str(out[job]), *MODES[job[0]], *sum((["--set", s] for s in args.set), [])],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for job in batch]
            for job, p in zip(batch, procs):
                if p.wait() != 0:
                    raise SystemExit(f"a training process failed: {p.stderr.read().decode()[-2000:]}")
                seconds[job[0]].append(time.perf_counter() - began)
        runs = {m: [_trajectory(out[(m, i)]) for i in range(args.runs)] for m in args.modes}
    print(f"({time.perf_counter() - t0:.0f} s in all)")
    for m in args.modes:
        _report(m, runs[m], seconds[m])
    if len(args.modes) == 2:
        a, b = args.modes
        ratio = statistics.median(seconds[b]) / statistics.median(seconds[a])
        same = runs[a][0][0] == runs[b][0][0]
        print(f"{b} / {a} median time per process: {ratio:.3f}; process 0 of each: "
              f"{'the same trajectory' if same else 'different trajectories'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
