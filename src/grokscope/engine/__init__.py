"""Training engines: functions from stacked parameters and inputs to logits at the target positions.

Every engine has the same contract, so the trainer does not care which one runs:

    engine.logits(params, inputs) -> Tensor [member batch n_target d_vocab_out]
      params: {TransformerLens name: Tensor [member, *shape]}  (a stacked ensemble; member = 1 alone)
      inputs: LongTensor [member batch n_ctx]
      n_target = len(task.target_positions); logits[:, :, i] are read at task.target_positions[i]

Each engine class has `name` (what `train.engine` and config.json's meta call it) and a classmethod
`supports(model_cfg, task) -> reason | None`. `select_engine` walks `ENGINES` in order: `auto`
takes the first that supports the run, a named engine must support it. `generic` runs the plain
model over every position and supports everything; `fast` (ModularFastEngine) exploits the
structure of 1-layer models on (x, y, =) tasks with the same mathematics. The choice is recorded
in the run's config.json.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from torch import nn

from grokscope.config import ConfigError, RunConfig
from grokscope.engine.generic import GenericEngine
from grokscope.engine.modular_fast import ModularFastEngine

log = logging.getLogger(__name__)

ENGINES: list[type] = [ModularFastEngine, GenericEngine]  # most specialised first


def select_engine(cfg: RunConfig, task: Any, model: nn.Module, engines: Sequence[type] | None = None) -> Any:
    """The engine `train.engine` asks for; `auto` = the first in `engines` (default ENGINES) that supports the run."""
    engines = ENGINES if engines is None else engines
    want = cfg.train.engine
    for cls in engines:
        if want not in ("auto", cls.name):
            continue
        reason = cls.supports(cfg.model, task)
        if reason is None:
            return cls(cfg.model, task, model)
        if want == cls.name:
            raise ConfigError("train.engine", f"{want!r} does not support this config ({reason}); use auto or generic")
        log.debug("engine %s declines: %s", cls.name, reason)
    names = ", ".join(["auto", *(c.name for c in engines)])
    raise ConfigError("train.engine", f"no engine supports this config (asked for {want!r}; allowed: {names})")


__all__ = ["ENGINES", "GenericEngine", "ModularFastEngine", "select_engine"]
