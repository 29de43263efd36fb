"""What every task is to the rest of grokscope: the `Task` protocol and the `Batch` it hands out.

A task owns its data: the vocabulary, the sequence length, which positions carry targets, and
the train / test split. Models size themselves from `d_vocab`, `d_vocab_out` and `n_ctx`;
engines read logits at `target_positions`; the trainer and `Run.loss_fn` see only `Batch`es.
Nothing outside `grokscope.tasks` reads a task's internals (a modular task's grid, say).

Three optional members make a task general (`getattr` defaults keep older tasks working):

* `components` names the parts of the answer whose losses are logged apart (the output digits of
  addition, the skip trigrams of max-element, the ops of a multi-op task); a `Batch` then says,
  per target, which component it belongs to. () or one name: the loss is not split.
* `infinite`: True when every training step draws fresh examples (`sample(step, n, seed)`);
  "train" and "test" are then fixed evaluation samples from the same distribution.
* a target label of -1 (`NO_TARGET`) marks a target position that carries no answer in that
  example (the unrepeated tokens of the repeated-subsequence task): it counts nowhere.

A new task is a class with these members plus a config dataclass, registered with
`grokscope.tasks.register_task(name, config_cls, task_cls)`; `grokscope.tasks.examples.ExampleTask`
does the splitting, batching, sampling and storing for a task that can generate its examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

Split = Literal["train", "test"]
NO_TARGET = -1  # a target label that means "no answer at this position in this example"


@dataclass(frozen=True)
class Batch:
    """Examples as tensors: one row per sequence.

    inputs  [B, n_ctx] long tokens (float features for a task with d_vocab 0: two_feature_digits)
    targets [B, n_target] long labels, one per target position (`Task.target_positions`); NO_TARGET: none
    mask    [B] bool: real examples (False rows are padding and count nowhere)
    components [B, n_target] long index into `Task.components` per target, or None (one component)
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    components: Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        comps = None if self.components is None else self.components.to(device)
        return Batch(self.inputs.to(device), self.targets.to(device), self.mask.to(device), comps)

    def valid(self) -> Tensor:
        """[..., B, n_target] bool: the targets that count (real examples, a label present)."""
        return self.mask[..., None] & (self.targets != NO_TARGET)


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


def components_of(task: Any) -> tuple[str, ...]:
    """The task's loss components, or () when its loss is not split (a task without `components`)."""
    names = tuple(getattr(task, "components", ()) or ())
    return names if len(names) > 1 else ()


def is_infinite(task: Any) -> bool:
    """True when the task draws fresh training examples every step (`sample`)."""
    return bool(getattr(task, "infinite", False))
