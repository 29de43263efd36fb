"""Tasks decide the data, the vocabulary and the sequence length; the model adapts to them.

`TASKS` maps `task.name` to the task class; `register_task` adds a family (its config dataclass
too, so `--set task.name=...` and config files know its keys).
"""

from __future__ import annotations

from typing import Any

from grokscope.config import TASK_CONFIGS
from grokscope.tasks.base import Batch, Split, Task
from grokscope.tasks.modular import ModularTask

TASKS: dict[str, type] = {"modular": ModularTask}


def register_task(name: str, config_cls: type, task_cls: type) -> None:
    """Make `task.name: <name>` build `task_cls` from a `config_cls` section."""
    TASK_CONFIGS[name] = config_cls
    TASKS[name] = task_cls


def task_class(cfg: Any) -> type:
    return TASKS[cfg.name]


def make_task(cfg: Any) -> Task:
    return task_class(cfg).from_config(cfg)


__all__ = ["Batch", "ModularTask", "Split", "Task", "TASKS", "make_task", "register_task", "task_class"]
