"""Sparse parity: n random bits, the answer is the parity of k of them (which k is hidden).

The standard task of hidden progress (Barak et al. 2022, "Hidden progress in deep learning: SGD
learns parities near the computational limit", n = 40..50, k = 3): loss stays flat at log 2 for a
long time, then falls in one phase change. Tokens: bits 0 and 1, "=" = 2, read at the last
position: [b1 .. bn, =] -> parity. The hidden bits are a seeded choice (task.data_seed), recorded
in describe() and so in reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.examples import Examples, ExampleTask, check_sizes, rng

EQ = 2


@dataclass(frozen=True)
class SparseParityConfig:
    """Parity of k hidden bits of n (grokscope.tasks.sparse_parity)."""

    name: str = "sparse_parity"
    n_bits: int = 40  # Barak et al. (2022) use n = 40..50, k = 3
    k: int = 3
    n_train: Optional[int] = None  # null = infinite data
    n_test: int = 2000
    data_seed: int = 0  # fixes the hidden bits and the data

    def check(self) -> None:
        if not 1 <= self.n_bits <= 1024:
            raise ConfigError("task.n_bits", f"must be an integer in 1..1024 (got {self.n_bits})")
        if not 1 <= self.k <= self.n_bits:
            raise ConfigError("task.k", f"must be an integer in 1..task.n_bits={self.n_bits} (got {self.k})")
        check_sizes(self)

    def label(self) -> str:
        return f"parity{self.n_bits}k{self.k}"

    def title(self) -> str:
        return f"sparse parity, {self.k} of {self.n_bits} bits"

    def shape(self) -> TaskShape:
        return TaskShape(3, 2, self.n_bits + 1, self.n_train)


class SparseParityTask(ExampleTask):
    name = "sparse_parity"

    def _setup(self) -> None:
        self.hidden = np.sort(rng(self.cfg.data_seed, 9).choice(self.cfg.n_bits, self.cfg.k, replace=False))

    @property
    def d_vocab(self) -> int:
        return 3

    @property
    def d_vocab_out(self) -> int:
        return 2

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_bits + 1

    @property
    def target_positions(self) -> tuple[int, ...]:
        return (self.cfg.n_bits,)

    def make(self, gen: np.random.Generator, n: int) -> Examples:
        bits = gen.integers(0, 2, size=(n, self.cfg.n_bits))
        parity = bits[:, self.hidden].sum(1) % 2
        inputs = np.concatenate([bits, np.full((n, 1), EQ)], axis=1).astype(np.int64)
        return Examples(inputs, parity[:, None].astype(np.int64))

    def describe(self) -> dict:
        return {**super().describe(), "n_bits": self.cfg.n_bits, "k": self.cfg.k, "hidden_bits": self.hidden.tolist()}
