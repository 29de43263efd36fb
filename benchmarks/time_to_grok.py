"""Wall time until the canonical run first reaches 99% test accuracy, with default settings.

Trains `grokscope.train(preset)` as `grokscope train --preset nanda2023` would (default engine,
evaluation every 10 epochs, checkpoints every 100, fsync'd writes) into a temporary folder and
records, at every evaluation, the seconds since the script started (imports included). It stops
at the first evaluation with test accuracy >= --target and prints that epoch and time, and the mean
epoch time so far. The grokking epoch itself depends on float rounding (a different summation order
moves it by hundreds of epochs), so the epoch time is the figure to compare across versions.

    python benchmarks/time_to_grok.py                 # nanda2023, stop at 99% test accuracy
    python benchmarks/time_to_grok.py --keep runs/ttg # keep the run folder
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from grokscope.presets import get_preset  # noqa: E402
from grokscope.trainer import Callback, TrainState, train  # noqa: E402
from common import machine_line  # noqa: E402


class _Reached(Exception):
    pass


class StopAtAccuracy(Callback):
    """Remember (epoch, seconds since START) at each evaluation; stop once test_acc >= target."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.evals: list[tuple[int, float, float]] = []

    def on_eval(self, state: TrainState) -> None:
        self.evals.append((state.epoch, time.perf_counter() - START, state.row["test_acc"]))
        if state.row["test_acc"] >= self.target:
            raise _Reached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="nanda2023")
    ap.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, as the CLI's")
    ap.add_argument("--keep", default=None, help="write the run here instead of a temporary folder")
    args = ap.parse_args()

    from grokscope.config import apply_overrides, parse_set

    cfg = apply_overrides(get_preset(args.preset), {**parse_set(args.set), "train.progress": False})
    stop = StopAtAccuracy(args.target)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "run"
        t_train = time.perf_counter() - START
        try:
            train(cfg, out, callbacks=[stop])
        except _Reached:
            pass
    epoch, secs, acc = stop.evals[-1]
    print(machine_line())
    print(f"{args.preset}: torch {torch.__version__}, {torch.get_num_threads()} threads, device {cfg.train.device}")
    print(f"imports and setup before training: {t_train:.1f} s")
    if acc >= args.target:
        print(f"test accuracy {acc:.4f} >= {args.target} first at epoch {epoch}, {secs:.1f} s after start "
              f"({(secs - t_train) / max(epoch, 1) * 1e3:.1f} ms per epoch, evaluation and checkpoints included)")
    else:
        print(f"not reached in {epoch} epochs ({secs:.1f} s); best test accuracy {max(e[2] for e in stop.evals):.4f}")


if __name__ == "__main__":
    main()
