"""Training-step time of the real trainer from any checkpoint, with and without flushed denormals.

A grokking run spends most of its epochs after memorisation, where the step time can differ from
the step time at the init (denormal gradients on Intel CPUs: docs/training.md). This script loads a
checkpoint of a run into a `Trainer` built from that run's config and times full-batch steps
(forward, backward, AdamW; no evaluation, nothing written), median of --steps after --warmup.

    python benchmarks/step_time.py runs/c40k --step 10000           # flushed, as the trainer runs
    python benchmarks/step_time.py runs/c40k --step 10000 --no-ftz  # denormals as they come
    python benchmarks/step_time.py runs/c40k --step 4000 --profile   # + the ops with the most time per step
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/step_time.py ...   # another version, A/B
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

import torch

from common import machine_line, op_profile
from grokscope.cpu import flush_denormals, keep_freed_memory
from grokscope.run import load_run
from grokscope.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run directory")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the last)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--no-ftz", action="store_true", help="leave float denormals alone")
    ap.add_argument("--profile", type=int, nargs="?", const=30, default=0, metavar="N",
                    help="also profile N steps (default 30) and print the ops with the most time per step")
    args = ap.parse_args()

    run = load_run(args.run)
    step = run.steps[-1] if args.step is None else args.step
    cfg = run.config.replace(**{"train.progress": False})
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp, (contextlib.nullcontext(False) if args.no_ftz else flush_denormals()) as ftz:
        tr = Trainer([cfg], [f"{tmp}/run"])
        params = run.params(step)
        with torch.no_grad():
            tr.flat[0].copy_(tr.layout.flatten({k: params[k].to(tr.flat.device) for k in tr.layout.names}))
        batch = tr._batch(0)
        lr = tr.lr.to(tr.flat.dtype)

        def one() -> None:  # the trainer's step without evaluation, checkpoints or the finiteness check
            _, _, grad = tr._gradient(tr.layout.views(tr.flat), batch)
            tr.opt.step(tr.flat, grad, lr, tr.wd)

        for _ in range(args.warmup):
            one()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            one()
            if tr.device.type == "cuda":
                torch.cuda.synchronize(tr.device)
            times.append(time.perf_counter() - t0)
        profile = op_profile(one, args.profile) if args.profile else None
    print(machine_line())
    print(f"{args.run} step {step}: engine {tr.engine.name}, device {tr.device}, {torch.get_num_threads()} threads, "
          f"denormals flushed {ftz}: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms "
          f"per training step ({args.steps} steps)")
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
