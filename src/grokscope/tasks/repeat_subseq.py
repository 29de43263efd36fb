"""Repeated subsequences: random tokens with one subsequence repeated; predict the repeated tokens.

Seed 004's task "designed to need induction heads" (2-layer attention-only): a uniform random
sequence in which a random subsequence occurs n_repeats times at random places, e.g.
7 2 [8 3 1 9] 3 [8 3 1 9] 9 2 5. The model predicts every next token, but only the tokens that can be
predicted count: those of the 2nd, 3rd ... copy after its first token (an induction head sees the
previous copy of the token before and copies what followed it). The copy number is the loss
component (copy2, copy3, ...). Defaults are those of the saved run behind seed 004: seq_len 85,
subseq_len 16, 3 repeats, vocabulary 128.

Positions: inputs are the first seq_len - 1 tokens, the target at position i is token i + 1
(NO_TARGET where unpredictable), so n_ctx = seq_len - 1 and every position is a target position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.base import NO_TARGET
from grokscope.tasks.examples import Examples, ExampleTask, check_sizes


@dataclass(frozen=True)
class RepeatSubseqConfig:
    """Predict the repeats of a random subsequence (grokscope.tasks.repeat_subseq)."""

    name: str = "repeat_subseq"
    seq_len: int = 85
    subseq_len: int = 16
    n_repeats: int = 3
    vocab: int = 128
    n_train: Optional[int] = None  # null = infinite data; seed 004 groks on 512 examples
    n_test: int = 1000
    data_seed: int = 0

    def check(self) -> None:
        if not 2 <= self.subseq_len <= 512:
            raise ConfigError("task.subseq_len", f"must be an integer in 2..512 (got {self.subseq_len})")
        if not 2 <= self.n_repeats <= 64:
            raise ConfigError("task.n_repeats", f"must be an integer in 2..64 (got {self.n_repeats})")
        if not self.subseq_len * self.n_repeats <= self.seq_len <= 4096:
            raise ConfigError("task.seq_len", f"must be in task.subseq_len x task.n_repeats = {self.subseq_len * self.n_repeats}"
                              f"..4096 (got {self.seq_len})")
        if not 2 <= self.vocab <= 65536:
            raise ConfigError("task.vocab", f"must be an integer in 2..65536 (got {self.vocab})")
        check_sizes(self)

    def label(self) -> str:
        return f"repeat{self.subseq_len}x{self.n_repeats}"

    def title(self) -> str:
        return f"repeated subsequence ({self.subseq_len} tokens x {self.n_repeats} in {self.seq_len})"

    def shape(self) -> TaskShape:
        return TaskShape(self.vocab, self.vocab, self.seq_len - 1, self.n_train)


class RepeatSubseqTask(ExampleTask):
    name = "repeat_subseq"

    def _setup(self) -> None:
        self.components = tuple(f"copy{r + 1}" for r in range(1, self.cfg.n_repeats))

    @property
    def d_vocab(self) -> int:
        return self.cfg.vocab

    @property
    def d_vocab_out(self) -> int:
        return self.cfg.vocab

    @property
    def n_ctx(self) -> int:
        return self.cfg.seq_len - 1

    @property
    def target_positions(self) -> tuple[int, ...]:
        return tuple(range(self.cfg.seq_len - 1))

    def make(self, gen: np.random.Generator, n: int) -> Examples:
        c = self.cfg
        seq = gen.integers(0, c.vocab, size=(n, c.seq_len))
        sub = gen.integers(0, c.vocab, size=(n, c.subseq_len))
        # gaps before, between and after the copies: a uniform composition of the filler length
        filler = c.seq_len - c.subseq_len * c.n_repeats
        cuts = np.sort(gen.integers(0, filler + 1, size=(n, c.n_repeats)), axis=1)
        starts = cuts + np.arange(c.n_repeats) * c.subseq_len  # [n, n_repeats]
        rows = np.arange(n)[:, None]
        comp = np.full((n, c.seq_len), NO_TARGET, dtype=np.int64)
        for r in range(c.n_repeats):
            cols = starts[:, r : r + 1] + np.arange(c.subseq_len)
            seq[rows, cols] = sub
            if r:
                comp[rows, cols[:, 1:]] = r - 1  # predictable: a copy's tokens after its first
        targets = np.where(comp[:, 1:] >= 0, seq[:, 1:], NO_TARGET)
        return Examples(seq[:, :-1].astype(np.int64), targets.astype(np.int64), np.maximum(comp[:, 1:], 0))
