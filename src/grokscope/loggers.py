"""Experiment loggers: a run's metrics, and its analysis's progress measures, to W&B or TensorBoard.

Off by default and never required (`train.log`: none | wandb | tensorboard; the CLI's `--log`).
The run directory stays the record; a logger is a view of it in the tool a lab already watches.
Each ensemble member is its own logged run, named after its run directory. In W&B a sweep's trials
share the group `sweep <spec name>` and an ensemble's members `ensemble <its folder>`
(`run_group`), so they line up in the group view; a lone run has no group.

- TensorBoard: event files in `RUN/tensorboard/` (`tensorboard --logdir runs/`). Needs the
  `tensorboard` package (`pip install 'grokscope[tensorboard]'`).
- W&B: a run under `RUN/wandb/`, online where an API key is configured and offline otherwise (or
  as `WANDB_MODE` says); an offline run uploads later with `wandb sync RUN/wandb/offline-run-*`.
  The W&B run id is kept in `RUN/wandb_id.txt`, so a resumed training and a later `grokscope
  analyze --log wandb` write to the same W&B run. Needs `wandb` (`pip install 'grokscope[wandb]'`).

Training metrics are logged under `metrics/` at the training step, the analysis's progress table
under `progress/` with its checkpoint step (W&B: against a `checkpoint_step` axis, since W&B only
accepts increasing steps on its own axis).
"""

from __future__ import annotations

import logging
import math
import netrc
import numbers
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from grokscope.callbacks import Callback, TrainState
from grokscope.config import ConfigError
from grokscope.io import atomic_write_text, read_json

log = logging.getLogger(__name__)

BACKENDS = ("none", "wandb", "tensorboard")  # each package's extra has the backend's name


def _need(backend: str):
    """Import the backend's package, or refuse in one line naming the extra that provides it."""
    try:
        if backend == "wandb":
            import wandb

            return wandb
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    except ImportError:
        raise ConfigError("train.log", f"{backend!r} needs its package: pip install 'grokscope[{backend}]' "
                          f"(allowed: {', '.join(BACKENDS)})") from None


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, or one whose package is missing, before anything is written."""
    if backend not in BACKENDS:
        raise ConfigError("train.log", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend != "none":
        _need(backend)


class _Writer:
    """One logged run: scalars at a step on an axis ("metrics" = training steps, "progress" = checkpoints)."""

    def scalars(self, axis: str, step: int, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class _TensorBoard(_Writer):
    def __init__(self, run_dir: Path) -> None:
        self.writer = _need("tensorboard")(log_dir=str(run_dir / "tensorboard"))

    def scalars(self, axis: str, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{axis}/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


def run_group(run_dir: str | Path) -> str | None:
    """The W&B group of a run, read from the files around it, so training and a later analysis agree:
    its sweep (the folder holds sweep.json), its ensemble (meta.ensemble_size > 1), else None."""
    run_dir = Path(run_dir).resolve()
    sweep = run_dir.parent / "sweep.json"
    if sweep.is_file():
        doc = read_json(sweep)
        return f"sweep {doc.get('name') or run_dir.parent.name}" if isinstance(doc, dict) else None
    config = run_dir / "config.json"
    doc = read_json(config) if config.is_file() else None
    meta = doc.get("meta") if isinstance(doc, dict) else None
    return f"ensemble {run_dir.parent.name}" if isinstance(meta, dict) and meta.get("ensemble_size", 1) > 1 else None


class _Wandb(_Writer):
    def __init__(self, run_dir: Path, config: dict | None) -> None:
        wandb = _need("wandb")
        id_file = run_dir / "wandb_id.txt"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:8]
            atomic_write_text(id_file, run_id + "\n")
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key() else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "grokscope"), dir=str(run_dir), id=run_id,
                              name=run_dir.name, group=run_group(run_dir), config=config, mode=mode, resume="allow",
                              reinit="create_new")
        self.run.define_metric("checkpoint_step")
        self.run.define_metric("progress/*", step_metric="checkpoint_step")
        if mode == "offline":
            log.info("W&B run %s is offline; upload it with: wandb sync %s", run_id, run_dir / "wandb")

    def scalars(self, axis: str, step: int, values: dict[str, float]) -> None:
        row = {f"{axis}/{k}": v for k, v in values.items()}
        if axis == "metrics":
            self.run.log(row, step=step)
        else:
            self.run.log({**row, "checkpoint_step": step})

    def close(self) -> None:
        self.run.finish()


def open_writer(backend: str, run_dir: str | Path, config: dict | None = None) -> _Writer:
    """A writer for one run directory; `backend` is wandb or tensorboard ("none" has no writer)."""
    check_backend(backend)
    run_dir = Path(run_dir)
    if backend == "tensorboard":
        return _TensorBoard(run_dir)
    if backend == "wandb":
        return _Wandb(run_dir, config)
    raise ValueError("train.log=none logs nothing: there is no writer to open")


class MetricsLogger(Callback):
    """Logs every member's metrics row at each evaluation step (a training callback)."""

    def __init__(self, backend: str, outs: Sequence[str | Path], configs: Sequence[dict]) -> None:
        self.writers = [open_writer(backend, o, c) for o, c in zip(outs, configs)]

    def on_eval(self, state: TrainState) -> None:
        for writer, row in zip(self.writers, state.rows):
            writer.scalars("metrics", state.step, {k: v for k, v in row.items() if k not in ("step", "epoch")})

    def on_end(self, state: TrainState) -> None:
        for writer in self.writers:
            writer.close()


def log_progress(backend: str, run_dir: str | Path, progress: pd.DataFrame) -> int:
    """Log an analysis's progress table (one row per checkpoint) to `backend`; returns the rows logged."""
    check_backend(backend)
    if backend == "none" or progress.empty:
        return 0
    writer = open_writer(backend, run_dir)
    try:
        for _, row in progress.iterrows():
            values = {k: float(v) for k, v in row.items() if k != "step" and _is_number(v)}
            writer.scalars("progress", int(row["step"]), values)
    finally:
        writer.close()
    return len(progress)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))


def _wandb_key() -> bool:
    """Whether W&B can log in without asking: WANDB_API_KEY, or `wandb login`'s ~/.netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False
