"""Composition in the symmetric group S_n (default S_5: 120 tokens), with openai/grok's variants.

Seed 003's experiments (after Power et al. 2022) use x o y in S_5. Elements are numbered in
lexicographic order of their one-line notation (0 = the identity); composition applies the right
factor first: (a o b)(i) = a(b(i)). Ops: `compose` a o b, `conj` a o b o a^-1, `aba` a o b o a.
Tokens [a, b, =] as the modular task (so the fast 1-layer engine applies), "=" = n!. The pair
(a, b) is table row a * n! + b, and the split is a seeded share `frac_train` of the rows.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.examples import Examples, ExampleTask, check_table

PERM_OPS = ("compose", "conj", "aba")


def permutations(n: int) -> np.ndarray:
    """[n!, n] every permutation of 0..n-1 in one-line notation, lexicographic (row 0 = identity)."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)


def multiplication_table(perms: np.ndarray) -> np.ndarray:
    """[N, N] index of a o b for element indices a, b."""
    n = perms.shape[1]
    radix = n ** np.arange(n - 1, -1, -1)  # a permutation's code: its one-line notation read in base n
    codes = perms @ radix  # increasing, since the rows are in lexicographic order
    table = np.empty((len(perms), len(perms)), dtype=np.int64)
    for a in range(len(perms)):
        composed = perms[a][perms]  # (a o b)(i) = a[b[i]] for every b at once: [N, n]
        table[a] = np.searchsorted(codes, composed @ radix)
    return table


@dataclass(frozen=True)
class PermComposeConfig:
    """x op y in S_n (grokscope.tasks.perm_compose)."""

    name: str = "perm_compose"
    n: int = 5  # S_5: 120 elements, 14400 pairs
    op: Literal["compose", "conj", "aba"] = "compose"
    frac_train: float = 0.5
    data_seed: int = 0

    def check(self) -> None:
        if not 2 <= self.n <= 7:
            raise ConfigError("task.n", f"must be an integer in 2..7 (S_n has n! elements and (n!)^2 pairs; got {self.n})")
        check_table(self)

    def label(self) -> str:
        return f"S{self.n}{self.op}"

    def title(self) -> str:
        return {"compose": "a o b", "conj": "a o b o a^-1", "aba": "a o b o a"}[self.op] + f" in S_{self.n}"

    def shape(self) -> TaskShape:
        size = math.factorial(self.n)
        return TaskShape(size + 1, size, 3, max(1, round(self.frac_train * size * size)))


class PermComposeTask(ExampleTask):
    name = "perm_compose"

    def _setup(self) -> None:
        self.perms = permutations(self.cfg.n)
        self.order = len(self.perms)
        self.table = multiplication_table(self.perms)
        self.inverse = np.argmin(self.table, axis=1)  # a o a^-1 = identity = element 0
        self.table_size = self.order**2

    @property
    def d_vocab(self) -> int:
        return self.order + 1

    @property
    def d_vocab_out(self) -> int:
        return self.order

    @property
    def n_ctx(self) -> int:
        return 3

    @property
    def target_positions(self) -> tuple[int, ...]:
        return (2,)

    @property
    def eq_token(self) -> int:
        return self.order

    def answer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = self.table
        if self.cfg.op == "compose":
            return t[a, b]
        if self.cfg.op == "conj":
            return t[t[a, b], self.inverse[a]]
        return t[t[a, b], a]

    def rows(self, index: np.ndarray) -> Examples:
        a, b = index // self.order, index % self.order
        inputs = np.stack([a, b, np.full_like(a, self.order)], axis=1)
        return Examples(inputs.astype(np.int64), self.answer(a, b)[:, None].astype(np.int64))

    def describe(self) -> dict:
        return {**super().describe(), "group": f"S{self.cfg.n}", "op": self.cfg.op}
