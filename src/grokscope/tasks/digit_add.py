"""n-digit addition with a loss per output digit (seed 004's "5 digit addition").

Encoding, n = 5 (seed 004's format "1|3|4|5|2|+|5|8|3|2|1|=|0|7|1|7|7|3"): the model reads
a1..a5 + b1..b5 = c0..c4 and predicts c0..c5 at the positions of "=" and c0..c4 (teacher
forcing), so n_ctx = 3n + 2 and there are n + 1 targets. c0 is the leading digit (0 or 1). Each
output digit is a loss component, digit0 (leading) .. digit5 (units), which is how seed 004 sees a
separate phase change per digit. Tokens: digits 0-9, "+" = 10, "=" = 11.

Data (grokscope.tasks.examples): `n_train: null` (the default) is infinite data, as seed 004's
per-digit curves; `n_train: 700` is the limited-data run that groks with weight decay (seed 004).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.examples import Examples, ExampleTask, check_sizes

PLUS, EQ = 10, 11


@dataclass(frozen=True)
class DigitAddConfig:
    """a + b for n-digit a, b drawn uniformly (grokscope.tasks.digit_add)."""

    name: str = "digit_add"
    n_digits: int = 5  # seed 004 uses 5 (and 15)
    n_train: Optional[int] = None  # training examples; null = infinite data (fresh examples every step)
    n_test: int = 2000  # test examples (and, with infinite data, the training-evaluation sample)
    data_seed: int = 0

    def check(self) -> None:
        if not 1 <= self.n_digits <= 18:
            raise ConfigError("task.n_digits", f"must be an integer in 1..18 (got {self.n_digits})")
        check_sizes(self)

    def label(self) -> str:
        return f"digitadd{self.n_digits}"

    def title(self) -> str:
        return f"{self.n_digits}-digit addition ({'infinite data' if self.n_train is None else f'{self.n_train} examples'})"

    def shape(self) -> TaskShape:
        return TaskShape(12, 10, 3 * self.n_digits + 2, self.n_train)


class DigitAddTask(ExampleTask):
    name = "digit_add"

    def _setup(self) -> None:
        n = self.cfg.n_digits
        self.components = tuple(f"digit{i}" for i in range(n + 1))

    @property
    def d_vocab(self) -> int:
        return 12

    @property
    def d_vocab_out(self) -> int:
        return 10

    @property
    def n_ctx(self) -> int:
        return 3 * self.cfg.n_digits + 2

    @property
    def target_positions(self) -> tuple[int, ...]:  # "=" and the first n answer digits
        n = self.cfg.n_digits
        return tuple(range(2 * n + 1, 3 * n + 2))

    def make(self, gen: np.random.Generator, n: int) -> Examples:
        d = self.cfg.n_digits
        a, b = gen.integers(0, 10, size=(2, n, d))  # most significant digit first
        c = np.zeros((n, d + 1), dtype=np.int64)
        carry = np.zeros(n, dtype=np.int64)
        for i in range(d - 1, -1, -1):  # schoolbook addition, least significant digit first
            s = a[:, i] + b[:, i] + carry
            c[:, i + 1], carry = s % 10, s // 10
        c[:, 0] = carry
        col = np.full((n, 1), 0, dtype=np.int64)
        inputs = np.concatenate([a, col + PLUS, b, col + EQ, c[:, :d]], axis=1)
        comps = np.broadcast_to(np.arange(d + 1), (n, d + 1)).copy()
        return Examples(inputs.astype(np.int64), c, comps)

    def describe(self) -> dict:
        return {**super().describe(), "n_digits": self.cfg.n_digits}
