"""`ExampleTask`: the splitting, batching, sampling and storing shared by tasks that make their examples.

A subclass says what an example is; this class decides which examples a run sees:

* an enumerable task (`table_size` > 0: every composition of two permutations, say) is split like
  the modular table: a seeded permutation of the table's rows, `frac_train` of them for training;
* a sampled task (`table_size` = 0: n-digit addition, sparse parity) draws `n_train` training and
  `n_test` test examples from seeded generators (test rows equal to a training row are dropped);
  with `n_train: null` the data is infinite: every step draws fresh examples, and "train" and
  "test" are two fixed evaluation samples of the same distribution.

Every random choice is a numpy `default_rng` seeded by a list, so the data is a pure function of
the config: training split [data_seed, 0], evaluation sample [data_seed, 1], test [data_seed, 2],
and the examples of step t of a run with train.seed s [data_seed, 3, s, t] (a resumed run sees the
same examples). split.json records the sizes, the training rows of a table and a sha256 of the
examples, which a stored run must reproduce to load.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from grokscope.config import ConfigError
from grokscope.tasks.base import Batch, Split

STREAMS = {"train": 0, "eval": 1, "test": 2, "step": 3}


@dataclass(frozen=True)
class Examples:
    """Examples as arrays, one row per sequence (shapes as in `Batch`): int64, or float32 inputs
    for a task of real-valued features (TaskShape.d_vocab == 0)."""

    inputs: np.ndarray  # [N, n_ctx]
    targets: np.ndarray  # [N, n_target], NO_TARGET where a position has no answer
    components: np.ndarray | None = None  # [N, n_target] component index per target

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, idx: np.ndarray) -> "Examples":
        comps = None if self.components is None else self.components[idx]
        return Examples(self.inputs[idx], self.targets[idx], comps)

    def batch(self) -> Batch:
        comps = None if self.components is None else torch.from_numpy(np.ascontiguousarray(self.components))
        return Batch(torch.from_numpy(np.ascontiguousarray(self.inputs)), torch.from_numpy(np.ascontiguousarray(self.targets)),
                     torch.ones(len(self), dtype=torch.bool), comps)

    def digest(self, h: Any) -> None:
        for a in (self.inputs, self.targets, self.components):
            if a is not None:  # features hash as float32 (an int64 cast would truncate them to 0)
                dtype = np.float32 if np.issubdtype(a.dtype, np.floating) else np.int64
                h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())


MAX_EXAMPLES = 10**7


def check_sizes(cfg: Any) -> None:
    """The data keys every sampled task shares: n_train (null = infinite), n_test, data_seed."""
    if cfg.n_train is not None and not 1 <= cfg.n_train <= MAX_EXAMPLES:
        raise ConfigError("task.n_train", f"must be null (infinite data) or an integer in 1..{MAX_EXAMPLES} (got {cfg.n_train})")
    if not 1 <= cfg.n_test <= MAX_EXAMPLES:
        raise ConfigError("task.n_test", f"must be an integer in 1..{MAX_EXAMPLES} (got {cfg.n_test})")
    if cfg.data_seed < 0:
        raise ConfigError("task.data_seed", f"must be >= 0 (got {cfg.data_seed})")


def check_table(cfg: Any) -> None:
    """The data keys every table task shares: frac_train, data_seed."""
    if not 0.0 < cfg.frac_train <= 1.0:
        raise ConfigError("task.frac_train", f"must be in (0, 1] (got {cfg.frac_train})")
    if cfg.data_seed < 0:
        raise ConfigError("task.data_seed", f"must be >= 0 (got {cfg.data_seed})")


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


class ExampleTask:
    """Base class: subclasses set `name`, `components` and the shape properties, and implement
    `make(rng, n)` (sampled tasks) or `table_size` and `rows(index)` (enumerable tasks)."""

    name: ClassVar[str] = ""
    components: tuple[str, ...] = ()
    table_size: int = 0  # > 0: an enumerable task with rows 0..table_size-1

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._setup()
        seed = cfg.data_seed
        if self.table_size:
            order = rng(seed, STREAMS["train"]).permutation(self.table_size)
            n_train = max(1, round(cfg.frac_train * self.table_size))
            self.train_index = np.sort(order[:n_train])
            self.test_index = np.sort(order[n_train:])
            self._train, self._test = self.rows(self.train_index), self.test_rows(self.test_index)
        elif self.infinite:
            self._train = self.make(rng(seed, STREAMS["eval"]), cfg.n_test)
            self._test = self.make(rng(seed, STREAMS["test"]), cfg.n_test)
        else:
            self._train = self.make(rng(seed, STREAMS["train"]), cfg.n_train)
            test = self.make(rng(seed, STREAMS["test"]), cfg.n_test)
            self._test = test.take(np.nonzero(~_rows_in(test, self._train))[0])

    # -- what a subclass provides ----------------------------------------------------------------
    def _setup(self) -> None:
        """Derive fixed structure from the config before any data is made (a permutation table, hidden bits)."""

    def make(self, gen: np.random.Generator, n: int) -> Examples:
        raise NotImplementedError(f"{type(self).__name__} is a table task; it has no make()")

    def rows(self, index: np.ndarray) -> Examples:
        raise NotImplementedError(f"{type(self).__name__} is a sampled task; it has no rows()")

    def test_rows(self, index: np.ndarray) -> Examples:
        """The test examples of the held-out table rows: the rows themselves, unless a task evaluates
        each row several ways (two_feature_digits shows every test image with both features and with each alone)."""
        return self.rows(index)

    # -- the Task protocol ------------------------------------------------------------------------
    @property
    def infinite(self) -> bool:
        return not self.table_size and getattr(self.cfg, "n_train", 0) is None

    @property
    def n_train(self) -> int:
        return len(self._train)

    @property
    def n_test(self) -> int:
        return len(self._test)

    @classmethod
    def from_config(cls, cfg: Any) -> "ExampleTask":
        return cls(cfg)

    @classmethod
    def from_split(cls, cfg: Any, split: dict) -> "ExampleTask":
        task = cls(cfg)
        want = task.split_dict()
        for key in ("n_train", "n_test", "sha256"):
            if split.get(key) != want[key]:
                raise ValueError(f"the split's {key} ({split.get(key)!r}) is not what the config generates ({want[key]!r}); "
                                 "was it written by another numpy version or edited?")
        return task

    def batch(self, split: Split, idx: np.ndarray | None = None) -> Batch:
        ex = self._train if split == "train" else self._test
        return (ex if idx is None else ex.take(np.asarray(idx))).batch()

    def sample(self, step: int, n: int, seed: int) -> Batch:
        """Fresh training examples for step `step` of a run with train.seed `seed` (infinite data)."""
        return self.make(rng(self.cfg.data_seed, STREAMS["step"], seed, step), n).batch()

    def split_dict(self) -> dict:
        h = hashlib.sha256()
        self._train.digest(h)
        self._test.digest(h)
        out: dict[str, Any] = {"kind": "examples", "infinite": self.infinite, "n_train": self.n_train, "n_test": self.n_test,
                               "sha256": h.hexdigest()}
        if self.table_size:
            out["table_size"] = self.table_size
            out["train"] = self.train_index.tolist()
        if self.infinite:
            out["stream"] = "numpy default_rng([task.data_seed, 3, train.seed, step])"
        return out

    def describe(self) -> dict:
        out = {"name": self.name, "n_train": "infinite" if self.infinite else self.n_train, "n_test": self.n_test}
        if len(self.components) > 1:
            out["components"] = len(self.components)
        return out


def _rows_in(a: Examples, b: Examples) -> np.ndarray:
    """[len(a)] bool: a's input rows that also occur in b (a sampled test set must not hold training inputs)."""
    seen = {row.tobytes() for row in np.ascontiguousarray(b.inputs)}
    return np.array([row.tobytes() in seen for row in np.ascontiguousarray(a.inputs)], dtype=bool)
