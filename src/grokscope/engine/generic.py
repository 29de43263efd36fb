"""The generic engine: the plain model, vmapped over ensemble members.

A model whose `forward(tokens, at)` takes target positions (grokscope's Transformer) computes its
last block only there: with 6 answer digits in 17 positions that is most of the MLP's work saved,
and the logits are the same (tests/test_engine.py).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import Tensor, nn
from torch.func import functional_call, vmap


class GenericEngine:
    """Logits at the task's target positions from the full-sequence model; works for every model config.

    Everything is ordinary autograd, so it is differentiable twice (Hessian-vector products,
    `Run.loss_fn`); the specialised engines are not necessarily.
    """

    name = "generic"

    @classmethod
    def supports(cls, model_cfg: Any, task: Any) -> str | None:
        return None

    def __init__(self, model_cfg: Any, task: Any, model: nn.Module) -> None:
        self.model = model
        # a model whose forward takes `at` computes its last block at the target positions only
        self.targeted = "at" in inspect.signature(model.forward).parameters
        pos = tuple(task.target_positions)
        contiguous = pos == tuple(range(pos[0], pos[0] + len(pos)))
        self.positions = slice(pos[0], pos[0] + len(pos)) if contiguous else list(pos)
        self.at = None if self.positions == slice(0, task.n_ctx) else self.positions  # None: every position is a target

    def at_targets(self, forward: Callable[..., Tensor], tokens: Tensor) -> Tensor:
        """forward(tokens) (or forward(tokens, at) for a targeted model) at the task's target positions:
        [batch n_target d_vocab_out]. `forward` is the model itself, or it with other parameters."""
        return forward(tokens, self.at) if self.targeted else forward(tokens)[:, self.positions]

    def logits(self, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """params: {name: [member, *shape]}, inputs: [member batch n_ctx] -> [member batch n_target d_vocab_out]."""

        def one(p: dict[str, Tensor], t: Tensor) -> Tensor:
            return self.at_targets(lambda *args: functional_call(self.model, p, args), t)

        return vmap(one)(params, inputs)
