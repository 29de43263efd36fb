"""What the training loop shows to code that watches or steers it: `TrainState` and `Callback`.

The trainer calls, per step and in this order: `on_step_start` (may change `state.lr`),
`on_eval` (evaluation steps), `on_checkpoint` (checkpoint steps), `on_gradient` (may replace the
gradient that the update uses), and `on_end` once. Interventions from the config's
`interventions:` section are callbacks too (grokscope.interventions).

Before the first step the trainer calls `bind(context)` once: a `TrainContext` with the tasks,
the engine's forward and the flat parameters, for callbacks that run the model themselves (the
excluded-loss regulariser in grokscope.interventions).

Stateful callbacks set `state_key` and implement `state_dict` / `load_state_dict`. Their state is
taken at the start of every checkpoint step, before any event of that step, and saved in that
step's `state/` file; a resume from the step loads it, so the run continues bit-exactly. Every
tensor in a callback's state has the ensemble member as its first dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor


@dataclass
class TrainState:
    """The explicit state of the loop at one step."""

    step: int
    epoch: int
    params: dict[str, Tensor]  # {name: [member, *shape]} views of the flat buffer
    lr: Tensor  # [member] learning rate used at this step (a callback may replace it in on_step_start)
    row: dict | None = None  # metrics of member 0 at an evaluation step
    rows: list[dict] = field(default_factory=list)  # metrics of every member at an evaluation step


@dataclass
class TrainContext:
    """What the trainer lends a callback beyond the step's state (see `Callback.bind`)."""

    cfgs: list[Any]  # one RunConfig per member
    tasks: list[Any]  # one task per member
    device: torch.device
    logits: Callable[[dict[str, Tensor], Tensor], Tensor]  # the engine: (params, inputs [member batch n_ctx]) -> logits
    views: Callable[[], dict[str, Tensor]]  # fresh {name: [member, *shape]} views of `flat`, differentiable
    flat: Tensor  # [member, n_params], the parameters the update changes (requires grad)


class Callback:
    """Override any of these. Only `on_gradient`'s return value is used: a new gradient, or None."""

    state_key: str | None = None  # set to save state_dict() with each checkpoint's state

    def bind(self, context: TrainContext) -> None: ...

    def on_step_start(self, state: TrainState) -> None: ...
    def on_eval(self, state: TrainState) -> None: ...
    def on_checkpoint(self, state: TrainState) -> None: ...

    def on_gradient(self, state: TrainState, grad: Tensor) -> Tensor | None:
        """grad: [member, n_params], the flat gradient of this step (in ParamLayout order)."""
        return None

    def on_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...
