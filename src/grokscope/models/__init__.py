"""Model families. One family per file; `make_model` builds the one `model.name` names.

A family is a builder `(model_cfg, d_vocab, d_vocab_out, n_ctx, seed) -> nn.Module` whose
parameters carry TransformerLens-style names; `register_model` adds one (and its config dataclass).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from grokscope.config import MODEL_CONFIGS, RunConfig
from grokscope.models.hooks import HookPoint, Hooked
from grokscope.models.mlp import MLP, MLPConfig, make_mlp
from grokscope.models.transformer import Transformer, make_transformer

MODELS: dict[str, Callable[..., nn.Module]] = {"transformer": make_transformer}


def register_model(name: str, config_cls: type, builder: Callable[..., nn.Module]) -> None:
    MODEL_CONFIGS[name] = config_cls
    MODELS[name] = builder


register_model("mlp", MLPConfig, make_mlp)


def make_model(cfg: RunConfig, task: Any) -> nn.Module:
    """The model for `cfg.model`, shaped by the task's vocabulary and context, initialised from train.seed.
    A family whose config has `check_task(task)` refuses tasks it cannot read (ConfigError)."""
    if hasattr(cfg.model, "check_task"):
        cfg.model.check_task(task)
    return MODELS[cfg.model.name](cfg.model, task.d_vocab, task.d_vocab_out, task.n_ctx, cfg.train.seed)


__all__ = ["HookPoint", "Hooked", "MLP", "MLPConfig", "MODELS", "Transformer", "make_mlp", "make_model", "make_transformer", "register_model"]
