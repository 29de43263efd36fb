"""The generic engine: the plain model over every position, vmapped over ensemble members."""

from __future__ import annotations

from torch import Tensor
from torch.func import functional_call, vmap

from grokscope.models.transformer import Transformer


class GenericEngine:
    """Answer-position logits from the full-sequence `Transformer`; works for every model config."""

    name = "generic"

    def __init__(self, model: Transformer) -> None:
        self.model = model

    def logits(self, params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """params: {name: [member, *shape]}, tokens: [member batch pos] -> [member batch d_vocab_out]."""

        def one(p: dict[str, Tensor], t: Tensor) -> Tensor:
            return functional_call(self.model, p, (t,))[:, -1]

        return vmap(one)(params, tokens)
