"""Many seeds of the canonical run in one process on a GPU: the time until every member has reached
99 % test accuracy, and member-epochs per second (issue 17).

    python benchmarks/gpu_ensemble.py                       # 64 seeds of nanda2023 on CUDA
    python benchmarks/gpu_ensemble.py --members 256
    python benchmarks/gpu_ensemble.py --device cpu --members 2 --epochs 50   # a smoke run without a GPU

The run stops once every member has reached --target (or after --epochs). Without CUDA and without
--device cpu it says so and exits 2.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from grokscope.presets import get_preset  # noqa: E402
from grokscope.trainer import Callback, TrainState, train_ensemble  # noqa: E402
from common import machine_line  # noqa: E402


class _AllReached(Exception):
    pass


class UntilAllGrok(Callback):
    """Record each member's first epoch at test_acc >= target; stop when every member has one."""

    def __init__(self, members: int, target: float) -> None:
        self.target = target
        self.first: list[tuple[int, float] | None] = [None] * members

    def on_eval(self, state: TrainState) -> None:
        for i, row in enumerate(state.rows):
            if self.first[i] is None and row["test_acc"] >= self.target:
                self.first[i] = (state.epoch, time.perf_counter() - START)
        if all(f is not None for f in self.first):
            raise _AllReached


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=40000)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_ensemble.py: CUDA is not available here (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    print(machine_line())
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    base = get_preset("nanda2023").replace(**{"train.device": args.device, "train.epochs": args.epochs,
                                              "train.progress": False})
    cfgs = [base.replace(**{"train.seed": s}) for s in range(args.members)]
    stop = UntilAllGrok(args.members, args.target)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            train_ensemble(cfgs, [Path(tmp) / f"seed{s}" for s in range(args.members)], callbacks=[stop])
        except _AllReached:
            pass
    wall = time.perf_counter() - t0
    reached = [f for f in stop.first if f is not None]
    last_epoch = max((e for e, _ in reached), default=args.epochs)
    epochs = last_epoch if len(reached) == args.members else args.epochs
    print(f"{len(reached)} of {args.members} members reached test accuracy {args.target}; "
          + (f"the last at epoch {last_epoch}, {max(t for _, t in reached):.1f} s after start" if reached else "none did"))
    if reached:
        es = sorted(e for e, _ in reached)
        print(f"grokking epochs: median {es[len(es) // 2]}, min {es[0]}, max {es[-1]}")
    print(f"{args.members * epochs / wall:.0f} member-epochs/s ({wall:.1f} s of training, {args.members} members)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
