"""Modular arithmetic: z = op(x, y) mod p over the full table of pairs, split into train and test.

Encoding (one example, p = 113, op = add): tokens [5, 110, 113] ("5 110 ="), label 2.
Pair (x, y) has grid index x * p + y; splits and analyses use that index, so a split is a set of
grid cells and the analysis can lay any per-example quantity out on the (x, y) grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from grokscope.config import ModularConfig
from grokscope.tasks.base import Batch, Split


def labels_for(op: str, x: np.ndarray, y: np.ndarray, p: int, data_seed: int = 0) -> np.ndarray:
    """z for each pair; `div` is x * y^(p-2) = x / y (Fermat), defined for y != 0 only."""
    x = x.astype(np.int64)
    y = y.astype(np.int64)
    if op == "add":
        return (x + y) % p
    if op == "sub":
        return (x - y) % p
    if op == "mul":
        return (x * y) % p
    if op == "div":
        inv = np.array([pow(int(v), p - 2, p) for v in range(p)], dtype=np.int64)
        return (x * inv[y]) % p
    if op == "x2xyy2":
        return (x * x + x * y + y * y) % p
    if op == "rand":  # a fixed random table: only memorisable, the control task
        table = np.random.default_rng([data_seed, 1]).integers(0, p, size=(p, p))
        return table[x, y]
    raise ValueError(f"task.op: unknown op {op!r}")


@dataclass(frozen=True)
class ModularTask:
    """The dataset of one modular-arithmetic run. Build with `ModularTask.from_config(cfg)`."""

    name: ClassVar[str] = "modular"
    cfg: ModularConfig
    grid_index: np.ndarray  # [n_pairs] grid indices x * p + y of the valid pairs (all, or y != 0 for div)
    labels_grid: np.ndarray  # [p * p] z for every cell (-1 where the op is undefined)
    train_idx: np.ndarray  # sorted grid indices of the training pairs
    test_idx: np.ndarray  # sorted grid indices of the test pairs

    @property
    def p(self) -> int:
        return self.cfg.p

    @property
    def d_vocab(self) -> int:  # x, y in 0..p-1 and "=" = p
        return self.cfg.p + 1

    @property
    def d_vocab_out(self) -> int:
        return self.cfg.p

    @property
    def n_ctx(self) -> int:
        return 3

    @property
    def target_positions(self) -> tuple[int, ...]:  # the answer is read after "="
        return (2,)

    @property
    def eq_token(self) -> int:
        return self.cfg.p

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def n_test(self) -> int:
        return len(self.test_idx)

    @classmethod
    def from_config(cls, cfg: ModularConfig) -> "ModularTask":
        p = cfg.p
        grid = np.arange(p * p)
        x, y = grid // p, grid % p
        valid = y != 0 if cfg.op == "div" else np.ones(p * p, dtype=bool)
        labels = np.full(p * p, -1, dtype=np.int64)
        labels[valid] = labels_for(cfg.op, x[valid], y[valid], p, cfg.data_seed)
        grid_index = grid[valid]
        train = split_pairs(grid_index, p, cfg.frac_train, cfg.data_seed, cfg.split)
        test = np.setdiff1d(grid_index, train)
        return cls(cfg, grid_index, labels, train, test)

    @classmethod
    def from_split(cls, cfg: ModularConfig, split: dict) -> "ModularTask":
        """Rebuild a task from a stored split (the run directory's split.json)."""
        task = cls.from_config(cfg)
        train, test = (np.asarray(split[k], dtype=np.int64) for k in ("train", "test"))
        if not (np.isin(train, task.grid_index).all() and np.isin(test, task.grid_index).all()):
            raise ValueError("the split holds indices outside the task's table")
        return cls(cfg, task.grid_index, task.labels_grid, train, test)

    def tokens(self, grid_idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[batch, 3] tokens (x, y, =) for grid indices."""
        idx = torch.as_tensor(np.asarray(grid_idx), dtype=torch.long)
        eq = torch.full_like(idx, self.eq_token)
        return torch.stack([idx // self.p, idx % self.p, eq], dim=-1)

    def labels(self, grid_idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.labels_grid[np.asarray(grid_idx)], dtype=torch.long)

    def batch(self, split: Split, idx: np.ndarray | None = None) -> Batch:
        grid = self.train_idx if split == "train" else self.test_idx
        if idx is not None:
            grid = grid[np.asarray(idx)]
        return Batch(self.tokens(grid), self.labels(grid)[:, None], torch.ones(len(grid), dtype=torch.bool))

    def split_dict(self) -> dict:
        return {"kind": "grid_index", "p": self.p, "train": self.train_idx.tolist(), "test": self.test_idx.tolist()}

    def describe(self) -> dict:
        return {"name": self.name, "op": self.cfg.op, "p": self.p, "n_train": self.n_train, "n_test": self.n_test}


def split_pairs(grid_index: np.ndarray, p: int, frac: float, seed: int, mode: str) -> np.ndarray:
    """Choose round(frac * n) training pairs with a seeded permutation; returns sorted grid indices.

    `symmetric` shuffles unordered pairs {(x, y), (y, x)} and keeps each pair on one side, so a model
    cannot pass the test set by commutativity alone (a worry about the random split, see
    docs/analysis.md).
    """
    rng = np.random.default_rng([seed, 0])
    n_train = max(1, round(frac * len(grid_index)))
    if mode == "random":
        return np.sort(rng.permutation(grid_index)[:n_train])
    x, y = grid_index // p, grid_index % p
    canon = np.minimum(x, y) * p + np.maximum(x, y)
    groups, inverse = np.unique(canon, return_inverse=True)
    order = rng.permutation(len(groups))
    sizes = np.bincount(inverse)[order]
    take = order[: int(np.searchsorted(np.cumsum(sizes), n_train) + 1)]
    chosen = np.isin(inverse, take)
    return np.sort(grid_index[chosen])
