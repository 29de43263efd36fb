"""Soak test: SIGKILL a canonical-size run 20 times at random moments, resume it each time, compare.

    python benchmarks/soak_kills.py                 # nanda2023, 1000 epochs, 20 kills (a few minutes on 2 cores)
    python benchmarks/soak_kills.py --epochs 300 --kills 8    # a quick one

It trains the `nanda2023` preset (x + y mod 113, the paper's model and optimiser), shortened to
--epochs, twice with `grokscope train` in subprocesses: once uninterrupted, once SIGKILLed --kills
times at seeded-random moments and resumed with `grokscope train --resume RUN` after each kill until
it finishes. Then every checkpoint's tensors, the last states and metrics.parquet must be
bit-identical. Prints the kills survived, how many landed mid-write, and whether everything matches;
exits 0 only if it does.

Kill moments: most kills wait until the run has saved a new state (so it makes progress), then a
random delay of up to one checkpoint interval; the rest land at a random time after launch (during
start-up, restore, training or a write). Both runs use one intra-op thread (--threads) so that
other jobs on the machine cannot make them crawl; bit-identity holds for any fixed thread count.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from grokscope.runstore import RunStore


def newest_state(run: Path) -> int:
    return max(RunStore(run).state_steps(), default=-1)


def compare(ref: Path, run: Path) -> tuple[bool, list[str], dict]:
    """Every checkpoint's tensors and metadata, the states' tensors, metrics exactly. Returns (ok, problems, counts)."""
    problems: list[str] = []
    sa, sb = RunStore(ref), RunStore(run)
    steps = sa.checkpoint_steps()
    if steps != sb.checkpoint_steps():
        problems.append(f"checkpoint steps differ: {steps} vs {sb.checkpoint_steps()}")
    n_tensors = 0
    for step in sorted(set(steps) & set(sb.checkpoint_steps())):
        ta, tb = sa.load_checkpoint(step), sb.load_checkpoint(step)  # each verified against its sha256
        if ta.keys() != tb.keys():
            problems.append(f"step {step}: tensor names differ")
        for name in ta.keys() & tb.keys():
            n_tensors += 1
            if ta[name].dtype != tb[name].dtype or ta[name].shape != tb[name].shape or not torch.equal(
                    ta[name].view(torch.uint8), tb[name].view(torch.uint8)):
                problems.append(f"step {step}: {name} differs")
    if sa.state_steps() != sb.state_steps():
        problems.append(f"state steps differ: {sa.state_steps()} vs {sb.state_steps()}")
    else:
        for step in sa.state_steps():
            (xa, ma), (xb, mb) = sa.load_state(step), sb.load_state(step)
            if ma != mb or xa.keys() != xb.keys() or any(not torch.equal(xa[k].view(torch.uint8), xb[k].view(torch.uint8)) for k in xa):
                problems.append(f"state {step} differs")
    ma, mb = sa.load_metrics(), sb.load_metrics()
    try:
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    except AssertionError as err:
        problems.append(f"metrics differ: {str(err).splitlines()[0]}")
    leftovers = [str(p) for p in run.rglob("*.tmp")]
    if leftovers:
        problems.append(f"temp files left: {leftovers}")
    counts = {"checkpoints": len(steps), "tensors": n_tensors, "metric_rows": len(ma), "states": len(sa.state_steps())}
    return not problems, problems, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1000, help="train.epochs of the shortened nanda2023 run (default 1000)")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs to land before letting the run finish (default 20)")
    ap.add_argument("--checkpoint-every", type=int, default=25, help="train.checkpoint_every (default 25)")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the kill-time RNG")
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS for both runs (default 1)")
    ap.add_argument("--out", help="where to keep the two runs (default: a temporary folder, removed afterwards)")
    args = ap.parse_args(argv)

    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="soak-")
    root = Path(args.out or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    ref, run = root / "uninterrupted", root / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": args.threads}
    cli = [sys.executable, "-m", "grokscope.cli", "train"]
    sets = ["--set", f"train.epochs={args.epochs}", "--set", f"train.checkpoint_every={args.checkpoint_every}",
            "--set", "train.progress=false"]
    fresh = lambda out: [*cli, "--preset", "nanda2023", *sets, "--out", str(out)]  # noqa: E731

    print(f"soak: nanda2023, {args.epochs} epochs, checkpoint every {args.checkpoint_every}, {args.kills} kills, "
          f"seed {args.seed}, OMP_NUM_THREADS={args.threads}, in {root}", flush=True)
    t0 = time.monotonic()
    subprocess.run(fresh(ref), check=True, env=env, stdout=subprocess.DEVNULL)
    ref_s = time.monotonic() - t0
    interval_s = ref_s / args.epochs * args.checkpoint_every
    print(f"uninterrupted run: {ref_s:.1f} s (~{interval_s:.2f} s per checkpoint interval)", flush=True)

    rng = random.Random(args.seed)
    kills, mid_write, launches = 0, 0, 0
    t1 = time.monotonic()
    while True:
        cmd = [*cli, "--resume", str(run)] if (run / "config.json").exists() else fresh(run)
        before = newest_state(run)
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        launches += 1
        if kills < args.kills:
            if rng.random() < 0.3:
                mode = "random"
                time.sleep(rng.uniform(0.0, 3.0 + interval_s))
            else:
                mode = "after-progress"
                while proc.poll() is None and newest_state(run) <= before:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, interval_s))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                kills += 1
                tmp_files = list(run.rglob("*.tmp")) if run.exists() else []
                mid_write += bool(tmp_files)
                print(f"kill {kills:2d} ({mode:14s}) {time.monotonic() - start:5.2f} s after launch; newest state "
                      f"{newest_state(run)}{'; mid-write: ' + tmp_files[0].name if tmp_files else ''}", flush=True)
                continue
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(f"resume failed (exit {proc.returncode}): {err.decode().strip()}")
            return 1
        break
    killed_s = time.monotonic() - t1
    ok, problems, counts = compare(ref, run)
    print(f"killed run: {killed_s:.1f} s over {launches} launches")
    print(f"kills survived: {kills} of {args.kills} requested ({mid_write} landed mid-write)")
    print(f"compared: {counts['checkpoints']} checkpoints ({counts['tensors']} tensors), {counts['states']} states, "
          f"{counts['metric_rows']} metrics rows")
    print("bit-identical to the uninterrupted run: " + ("YES" if ok else "NO"))
    for p in problems:
        print(f"  {p}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok and kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
