"""Training engines: functions from stacked parameters and tokens to answer-position logits.

Every engine has the same contract, so the trainer does not care which one runs:

    engine.logits(params, tokens) -> Tensor [member batch d_vocab_out]
      params: {TransformerLens name: Tensor [member, *shape]}  (a stacked ensemble; member = 1 alone)
      tokens: LongTensor [member batch pos]

`generic` runs the plain model over every position. `fast` exploits the 1-layer structure (only
the answer position reaches the logits) with the same mathematics; `select_engine` picks it
automatically where it applies, and the choice is recorded in the run's config.json.
"""

from __future__ import annotations

import logging

from grokscope.config import RunConfig
from grokscope.engine.generic import GenericEngine
from grokscope.models.transformer import Transformer

log = logging.getLogger(__name__)


def fast_engine_unsupported(cfg: RunConfig, task) -> str | None:
    """Why the fast engine cannot run this config, or None when it can."""
    m = cfg.model
    if m.n_layers != 1:
        return "model.n_layers != 1"
    if m.normalization is not None:
        return "model.normalization is set"
    if getattr(task, "n_ctx", None) != 3 or not hasattr(task, "eq_token"):
        return "the task is not an (x, y, =) task"
    return None


def select_engine(cfg: RunConfig, task, model: Transformer):
    """The engine `train.engine` asks for; `auto` = fast where supported, else generic."""
    reason = fast_engine_unsupported(cfg, task)
    if cfg.train.engine == "generic" or (cfg.train.engine == "auto" and reason is not None):
        return GenericEngine(model)
    if reason is not None:
        from grokscope.config import ConfigError

        raise ConfigError("train.engine", f"'fast' does not support this config ({reason}); use auto or generic")
    from grokscope.engine.fast import FastEngine

    return FastEngine(cfg.model, task)


__all__ = ["GenericEngine", "select_engine", "fast_engine_unsupported"]
