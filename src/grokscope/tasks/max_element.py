"""Max element: one entry >= n_small in a sequence; predict it after END (seed 004's skip trigrams).

Seed 004's format: START 0 4 7 2 4 14 9 7 2 5 3 END -> 14, with exactly one entry in
n_small..n_small+n_big-1 (10..19) and the others below n_small. A 1-layer attention-only model
solves it with n_big skip trigrams "14 .. END -> 14"; each is a loss component (max10 .. max19),
and seed 004 sees a phase change per trigram, all at about the same time. Tokens: values
0..n_small+n_big-1, START, END.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.examples import Examples, ExampleTask, check_sizes


@dataclass(frozen=True)
class MaxElementConfig:
    """Find the one large entry of a sequence (grokscope.tasks.max_element)."""

    name: str = "max_element"
    seq_len: int = 11  # entries between START and END (seed 004's example has 11)
    n_small: int = 10  # values 0..n_small-1 fill the sequence
    n_big: int = 10  # values n_small..n_small+n_big-1: one per sequence, the answer (one skip trigram each)
    n_train: Optional[int] = None  # null = infinite data
    n_test: int = 2000
    data_seed: int = 0

    def check(self) -> None:
        if not 2 <= self.seq_len <= 512:
            raise ConfigError("task.seq_len", f"must be an integer in 2..512 (got {self.seq_len})")
        for key in ("n_small", "n_big"):
            if not 1 <= getattr(self, key) <= 1000:
                raise ConfigError(f"task.{key}", f"must be an integer in 1..1000 (got {getattr(self, key)})")
        check_sizes(self)

    def label(self) -> str:
        return f"maxelem{self.seq_len}"

    def title(self) -> str:
        return f"max element of {self.seq_len} ({self.n_big} skip trigrams)"

    def shape(self) -> TaskShape:
        v = self.n_small + self.n_big
        return TaskShape(v + 2, v, self.seq_len + 2, self.n_train)


class MaxElementTask(ExampleTask):
    name = "max_element"

    def _setup(self) -> None:
        self.components = tuple(f"max{self.cfg.n_small + i}" for i in range(self.cfg.n_big))

    @property
    def d_vocab(self) -> int:  # values, START, END
        return self.cfg.n_small + self.cfg.n_big + 2

    @property
    def d_vocab_out(self) -> int:
        return self.cfg.n_small + self.cfg.n_big

    @property
    def n_ctx(self) -> int:
        return self.cfg.seq_len + 2

    @property
    def target_positions(self) -> tuple[int, ...]:  # read at END
        return (self.cfg.seq_len + 1,)

    def make(self, gen: np.random.Generator, n: int) -> Examples:
        c = self.cfg
        v = c.n_small + c.n_big
        seq = gen.integers(0, c.n_small, size=(n, c.seq_len))
        big = gen.integers(0, c.n_big, size=n)
        seq[np.arange(n), gen.integers(0, c.seq_len, size=n)] = c.n_small + big
        inputs = np.concatenate([np.full((n, 1), v), seq, np.full((n, 1), v + 1)], axis=1).astype(np.int64)
        return Examples(inputs, (c.n_small + big)[:, None].astype(np.int64), big[:, None].astype(np.int64))
