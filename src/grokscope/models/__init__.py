"""Model families. One family per file; `make_model` builds the one a config names."""

from __future__ import annotations

from grokscope.config import RunConfig
from grokscope.models.transformer import HookPoint, Transformer, make_transformer


def make_model(cfg: RunConfig, task) -> Transformer:
    """The model for `cfg.model`, shaped by the task's vocabulary and context, initialised from train.seed."""
    return make_transformer(cfg.model, task.d_vocab, task.d_vocab_out, task.n_ctx, cfg.train.seed)


__all__ = ["HookPoint", "Transformer", "make_model", "make_transformer"]
