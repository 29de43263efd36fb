"""Several modular operations at once, chosen by an op token: [x, op, y, =] -> op(x, y) mod p.

Seed 004 asks whether a model that learns several algorithms gets a separate phase change for
each; each op is a loss component, so the per-component curves and the phase-change detector answer
it. The table is every (op, x, y) (y != 0 for div), row (op_index * p + x) * p + y, split by a
seeded share `frac_train` of the rows. Tokens: 0..p-1, the ops p..p+len(ops)-1, "=" last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grokscope.config import MODULAR_OPS, ConfigError, TaskShape, is_prime
from grokscope.tasks.examples import Examples, ExampleTask, check_table
from grokscope.tasks.modular import labels_for


@dataclass(frozen=True)
class ModularMultiConfig:
    """op(x, y) mod p for several ops with an op token (grokscope.tasks.modular_multi)."""

    name: str = "modular_multi"
    ops: tuple[str, ...] = ("add", "sub")
    p: int = 59
    frac_train: float = 0.3
    data_seed: int = 0

    def check(self) -> None:
        allowed = [o for o in MODULAR_OPS if o != "rand"]
        for op in self.ops:
            if op not in allowed:
                raise ConfigError("task.ops", f"unknown op {op!r} (allowed: {', '.join(allowed)})")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ConfigError("task.ops", f"must list distinct ops, at least one (got {list(self.ops)})")
        if not 3 <= self.p <= 1024:
            raise ConfigError("task.p", f"must be an integer in 3..1024 (got {self.p})")
        if any(op in ("div", "mul") for op in self.ops) and not is_prime(self.p):
            raise ConfigError("task.p", f"must be prime for ops mul and div (got {self.p})")
        check_table(self)

    def label(self) -> str:
        return "".join(self.ops) + str(self.p)

    def title(self) -> str:
        return f"{', '.join(self.ops)} mod {self.p}"

    def shape(self) -> TaskShape:
        size = len(self.ops) * self.p * self.p
        return TaskShape(self.p + len(self.ops) + 1, self.p, 4, max(1, round(self.frac_train * size)))


class ModularMultiTask(ExampleTask):
    name = "modular_multi"

    def _setup(self) -> None:
        c = self.cfg
        self.components = tuple(c.ops)
        grid = np.arange(len(c.ops) * c.p * c.p)
        op, x, y = grid // (c.p * c.p), grid // c.p % c.p, grid % c.p
        labels = np.full(grid.shape, -1, dtype=np.int64)
        for i, name in enumerate(c.ops):
            rows = (op == i) & ((y != 0) if name == "div" else True)
            labels[rows] = labels_for(name, x[rows], y[rows], c.p)
        self.valid = np.nonzero(labels >= 0)[0]  # table rows are the valid (op, x, y) cells
        self.labels, self.table_size = labels, len(self.valid)

    @property
    def d_vocab(self) -> int:
        return self.cfg.p + len(self.cfg.ops) + 1

    @property
    def d_vocab_out(self) -> int:
        return self.cfg.p

    @property
    def n_ctx(self) -> int:
        return 4

    @property
    def target_positions(self) -> tuple[int, ...]:
        return (3,)

    def rows(self, index: np.ndarray) -> Examples:
        p, cell = self.cfg.p, self.valid[index]
        op, x, y = cell // (p * p), cell // p % p, cell % p
        inputs = np.stack([x, p + op, y, np.full_like(x, self.d_vocab - 1)], axis=1)
        return Examples(inputs.astype(np.int64), self.labels[cell][:, None], op[:, None].astype(np.int64))

    def describe(self) -> dict:
        return {**super().describe(), "ops": list(self.cfg.ops), "p": self.cfg.p}
