"""Tasks decide the data, the vocabulary and the sequence length; the model adapts to them.

`TASKS` maps `task.name` to the task class; `register_task` adds a family (its config dataclass
too, so `--set task.name=...` and config files know its keys).
"""

from __future__ import annotations

from typing import Any

from grokscope.config import TASK_CONFIGS
from grokscope.tasks.base import NO_TARGET, Batch, Split, Task, components_of, is_infinite
from grokscope.tasks.digit_add import DigitAddConfig, DigitAddTask
from grokscope.tasks.max_element import MaxElementConfig, MaxElementTask
from grokscope.tasks.modular import ModularTask
from grokscope.tasks.modular_multi import ModularMultiConfig, ModularMultiTask
from grokscope.tasks.perm_compose import PermComposeConfig, PermComposeTask
from grokscope.tasks.repeat_subseq import RepeatSubseqConfig, RepeatSubseqTask
from grokscope.tasks.sparse_parity import SparseParityConfig, SparseParityTask
from grokscope.tasks.two_feature_digits import TwoFeatureDigitsConfig, TwoFeatureDigitsTask

TASKS: dict[str, type] = {"modular": ModularTask}


def register_task(name: str, config_cls: type, task_cls: type) -> None:
    """Make `task.name: <name>` build `task_cls` from a `config_cls` section."""
    TASK_CONFIGS[name] = config_cls
    TASKS[name] = task_cls


for _cfg, _task in ((DigitAddConfig, DigitAddTask), (RepeatSubseqConfig, RepeatSubseqTask), (MaxElementConfig, MaxElementTask),
                    (PermComposeConfig, PermComposeTask), (SparseParityConfig, SparseParityTask),
                    (ModularMultiConfig, ModularMultiTask), (TwoFeatureDigitsConfig, TwoFeatureDigitsTask)):
    register_task(_task.name, _cfg, _task)


def task_class(cfg: Any) -> type:
    return TASKS[cfg.name]


def make_task(cfg: Any) -> Task:
    return task_class(cfg).from_config(cfg)


__all__ = ["Batch", "NO_TARGET", "ModularTask", "Split", "Task", "TASKS", "components_of", "is_infinite", "make_task",
           "register_task", "task_class"]
