"""What every task is to the rest of grokscope: the `Task` protocol and the `Batch` it hands out.

A task owns its data: the vocabulary, the sequence length, which positions carry targets, and
the train / test split. Models size themselves from `d_vocab`, `d_vocab_out` and `n_ctx`;
engines read logits at `target_positions`; the trainer and `Run.loss_fn` see only `Batch`es.
Nothing outside `grokscope.tasks` reads a task's internals (a modular task's grid, say).

A new task is a class with these members plus a config dataclass, registered with
`grokscope.tasks.register_task(name, config_cls, task_cls)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Batch:
    """Examples as tensors: one row per sequence.

    inputs  [B, n_ctx] long tokens
    targets [B, n_target] long labels, one per target position (`Task.target_positions`)
    mask    [B] bool: real examples (False rows are padding and count nowhere)
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.inputs.to(device), self.targets.to(device), self.mask.to(device))


@runtime_checkable
class Task(Protocol):
    """One run's dataset. Build with `from_config(cfg)`; rebuild a stored run with `from_split`."""

    name: ClassVar[str]
    cfg: Any  # the task's config dataclass (a TASK_CONFIGS family member)

    @property
    def d_vocab(self) -> int: ...
    @property
    def d_vocab_out(self) -> int: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def target_positions(self) -> tuple[int, ...]: ...
    @property
    def n_train(self) -> int: ...
    @property
    def n_test(self) -> int: ...

    @classmethod
    def from_config(cls, cfg: Any) -> "Task": ...
    @classmethod
    def from_split(cls, cfg: Any, split: dict) -> "Task":
        """The task with the split a run directory stored (split.json); RunDirError-worthy input raises ValueError."""
        ...

    def batch(self, split: Split, idx: np.ndarray | None = None) -> Batch:
        """Examples of a split: all of them, or those at positions `idx` within the split."""
        ...

    def split_dict(self) -> dict:
        """What split.json holds: enough to rebuild exactly this train / test split."""
        ...

    def describe(self) -> dict:
        """A few human-readable facts for reports (name, sizes, what is being computed)."""
        ...
