"""Tasks decide the data, the vocabulary and the sequence length; the model adapts to them."""

from __future__ import annotations

from grokscope.config import TaskConfig
from grokscope.tasks.modular import ModularTask

TASKS = {"modular": ModularTask}


def make_task(cfg: TaskConfig) -> ModularTask:
    return TASKS[cfg.name].from_config(cfg)


__all__ = ["ModularTask", "make_task", "TASKS"]
