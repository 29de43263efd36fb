"""Hook points: named identity modules where an activation can be read or replaced.

Every grokscope model subclasses `Hooked`, which names each `HookPoint` after its path in the
module tree (TransformerLens' names: `blocks.0.mlp.hook_post`, ...) and gives the model
`run_with_hooks` and `run_with_cache` as in TransformerLens.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from torch import Tensor, nn


class HookPoint(nn.Module):
    """Identity on an activation; a place to read or replace it, named by the root module."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Hooked(nn.Module):
    """A model with hook points; call `name_hooks()` at the end of `__init__`."""

    def name_hooks(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

    def hook_points(self) -> dict[str, HookPoint]:
        return {m.name: m for m in self.modules() if isinstance(m, HookPoint)}

    @contextmanager
    def hooks(self, fwd_hooks: list[tuple[str, Callable[[Tensor, HookPoint], Tensor | None]]]) -> Iterator[None]:
        """Temporarily attach `fn(activation, hook) -> new activation or None` at named hook points."""
        points = self.hook_points()
        handles = []
        try:
            for name, fn in fwd_hooks:
                if name not in points:
                    raise KeyError(f"unknown hook point {name!r}")
                handles.append(points[name].register_forward_hook(lambda mod, inp, out, fn=fn: fn(out, mod)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run_with_hooks(self, tokens: Tensor, fwd_hooks: list) -> Tensor:
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(
        self, tokens: Tensor, names_filter: Callable[[str], bool] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and a dict of every (or every filtered) activation, keyed by TransformerLens name."""
        cache: dict[str, Tensor] = {}

        def save(act: Tensor, hook: HookPoint) -> None:
            cache[hook.name] = act.detach()

        names = [n for n in self.hook_points() if names_filter is None or names_filter(n)]
        logits = self.run_with_hooks(tokens, [(n, save) for n in names])
        return logits, cache
