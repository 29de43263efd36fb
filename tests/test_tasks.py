import numpy as np
import pytest

from grokscope.config import ModularConfig
from grokscope.tasks.modular import ModularTask, labels_for


def test_split_is_deterministic_and_seed_dependent():
    a = ModularTask.from_config(ModularConfig(p=31, data_seed=3))
    b = ModularTask.from_config(ModularConfig(p=31, data_seed=3))
    c = ModularTask.from_config(ModularConfig(p=31, data_seed=4))
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.test_idx, b.test_idx)
    assert not np.array_equal(a.train_idx, c.train_idx)


def test_split_partitions_the_table():
    t = ModularTask.from_config(ModularConfig(p=113, frac_train=0.3))
    assert len(t.train_idx) == round(0.3 * 113**2)
    assert len(np.intersect1d(t.train_idx, t.test_idx)) == 0
    assert np.array_equal(np.union1d(t.train_idx, t.test_idx), np.arange(113**2))


def test_symmetric_split_keeps_pairs_together():
    p = 29
    t = ModularTask.from_config(ModularConfig(p=p, frac_train=0.4, split="symmetric", data_seed=1))
    train = set(t.train_idx.tolist())
    for i in train:
        x, y = divmod(i, p)
        assert y * p + x in train
    assert abs(len(train) - 0.4 * p * p) <= 2  # whole pairs: at most one pair over


def test_random_split_does_not_keep_pairs_together():
    p = 29
    t = ModularTask.from_config(ModularConfig(p=p, frac_train=0.4, split="random"))
    train = set(t.train_idx.tolist())
    assert any((i % p) * p + i // p not in train for i in train)


def test_division_is_true_modular_division():
    p = 13
    t = ModularTask.from_config(ModularConfig(p=p, op="div", frac_train=1.0))
    assert len(t.grid_index) == p * (p - 1)  # y = 0 excluded
    for i in t.grid_index:
        x, y = divmod(int(i), p)
        z = t.labels_grid[i]
        assert (z * y) % p == x
    assert (t.labels_grid.reshape(p, p)[:, 0] == -1).all()


@pytest.mark.parametrize("op,f", [
    ("add", lambda x, y, p: (x + y) % p), ("sub", lambda x, y, p: (x - y) % p),
    ("mul", lambda x, y, p: (x * y) % p), ("x2xyy2", lambda x, y, p: (x * x + x * y + y * y) % p),
])
def test_ops(op, f):
    p = 7
    x, y = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    assert np.array_equal(labels_for(op, x.ravel(), y.ravel(), p), f(x.ravel(), y.ravel(), p))


def test_rand_table_is_fixed_by_data_seed():
    p = 11
    x, y = np.arange(p).repeat(p), np.tile(np.arange(p), p)
    assert np.array_equal(labels_for("rand", x, y, p, 0), labels_for("rand", x, y, p, 0))
    assert not np.array_equal(labels_for("rand", x, y, p, 0), labels_for("rand", x, y, p, 1))


def test_tokens_encode_x_y_eq():
    t = ModularTask.from_config(ModularConfig(p=113))
    tok = t.tokens(np.array([5 * 113 + 110]))
    assert tok.tolist() == [[5, 110, 113]]
    assert t.labels(np.array([5 * 113 + 110])).tolist() == [2]
    assert (t.d_vocab, t.d_vocab_out, t.n_ctx) == (114, 113, 3)
