"""`load_run`: a finished (or running) run directory as Python objects, for analysis and notebooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grokscope.config import ConfigError, RunConfig
from grokscope.io import RunDirError
from grokscope.models import make_model
from grokscope.models.transformer import Transformer
from grokscope.runstore import RunStore
from grokscope.tasks.modular import ModularTask


@dataclass
class Run:
    """A run directory, read: config, split, metrics and checkpoints (loaded lazily, verified by sha256)."""

    path: Path
    config: RunConfig
    meta: dict
    task: ModularTask
    store: RunStore = field(repr=False)

    @property
    def name(self) -> str:
        return self.config.name or self.path.name

    @property
    def metrics(self) -> pd.DataFrame:
        return self.store.load_metrics()

    @property
    def steps(self) -> list[int]:
        """Checkpointed steps, ascending."""
        return self.store.checkpoint_steps()

    def params(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """{TransformerLens name: tensor} at a checkpoint (default: the last)."""
        if step is None:
            if not self.steps:
                raise RunDirError(f"{self.path} has no checkpoints")
            step = self.steps[-1]
        return self.store.load_checkpoint(step)

    def checkpoint(self, step: int | None = None, device: str | torch.device = "cpu") -> Transformer:
        """The model at a checkpoint, ready for `run_with_cache`."""
        model = make_model(self.config, self.task)
        params = self.params(step)
        expected = set(model.state_dict())
        if set(params) != expected:
            raise RunDirError(f"{self.path}: checkpoint tensors {sorted(set(params) ^ expected)} do not match the model")
        model.load_state_dict(params)
        return model.to(device).eval()


def load_run(path: str | Path) -> Run:
    """Open a run directory; raises RunDirError with the offending file on anything malformed."""
    store = RunStore(path)
    if not store.path.is_dir():
        raise RunDirError(f"{store.path} is not a directory")
    raw, meta = store.read_config()
    try:
        cfg = RunConfig.from_dict(raw)
    except ConfigError as err:
        raise RunDirError(f"{store.config_path}: {err}") from None
    split = store.read_split()
    task = ModularTask.from_split(cfg.task, np.array(split["train"], dtype=np.int64), np.array(split["test"], dtype=np.int64))
    valid = set(task.grid_index.tolist())
    if not set(split["train"]) <= valid or not set(split["test"]) <= valid:
        raise RunDirError(f"{store.split_path} holds indices outside the task's table")
    return Run(store.path, cfg, meta, task, store)
