"""Wall time of `grokscope analyze RUN --max-checkpoints N`, as a user runs it (imports included).

Copies the run's config, split, metrics and checkpoints into a temporary folder (so RUN/analysis/
is left alone), then runs the CLI there `--repeat` times in fresh processes and prints each wall
time and the median. The issue's target is <= 20 s for 250 checkpoints of the canonical run on the
project's 2-core CPU.

    python benchmarks/analyze_speed.py runs/c40k                 # 250 checkpoints, 3 repeats
    python benchmarks/analyze_speed.py runs/c40k --checkpoints 408 --repeat 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a trained run directory")
    ap.add_argument("--checkpoints", type=int, default=250, help="--max-checkpoints for the CLI")
    ap.add_argument("--repeat", type=int, default=3, help="timed CLI runs")
    args = ap.parse_args()

    src = Path(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / src.name
        run.mkdir()
        for name in ("config.json", "split.json", "metrics.parquet"):
            if (src / name).exists():
                shutil.copy2(src / name, run / name)
        shutil.copytree(src / "checkpoints", run / "checkpoints")
        cmd = [sys.executable, "-m", "grokscope.cli", "analyze", str(run), "--max-checkpoints", str(args.checkpoints)]
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
            times.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {times[-1]:.1f} s wall  ({out})", flush=True)
    print(machine_line())
    print(f"grokscope analyze, {args.checkpoints} checkpoints of {src}: median {statistics.median(times):.1f} s wall "
          f"(min {min(times):.1f}, max {max(times):.1f}; {args.repeat} runs, imports included)")


if __name__ == "__main__":
    main()
