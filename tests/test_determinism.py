"""`train.deterministic` (issue 17): the settings it makes, their record, their refusal, bit-identical processes.

enable() changes process-wide state, so everything that turns it on runs in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from grokscope import determinism
from grokscope.config import ConfigError
from grokscope.cpu import mkl_mode
from grokscope.engine import kernels

pytestmark = pytest.mark.skipif(mkl_mode() is None, reason="torch is built without a reachable MKL")


def _train(out, *sets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--preset", "tiny", "--out", str(out),
                           "--set", "train.progress=false", *sum((["--set", s] for s in sets), [])],
                          capture_output=True, text=True, timeout=300)


def test_two_deterministic_processes_give_the_same_bits_and_say_so(tmp_path):
    for name in ("a", "b"):
        done = _train(tmp_path / name, "train.deterministic=true", "train.epochs=150")
        assert done.returncode == 0, done.stderr
    a, b = (pd.read_parquet(tmp_path / n / "metrics.parquet") for n in "ab")
    assert a[["train_loss", "test_loss"]].to_numpy().tobytes() == b[["train_loss", "test_loss"]].to_numpy().tobytes()
    numerics = json.loads((tmp_path / "a" / "config.json").read_text())["meta"]["numerics"]
    assert numerics["mkl_cbwr"] == "AUTO" and numerics["deterministic_algorithms"] is True


def test_the_default_mode_records_that_nothing_was_pinned(tmp_path):
    assert _train(tmp_path / "d", "train.epochs=5").returncode == 0
    numerics = json.loads((tmp_path / "d" / "config.json").read_text())["meta"]["numerics"]
    assert numerics["mkl_cbwr"] == "OFF" and numerics["deterministic_algorithms"] is False


def test_an_mkl_mode_from_the_environment_is_kept(tmp_path):
    code = ("import torch; from grokscope import determinism; from grokscope.cpu import mkl_mode; "
            "torch.ones(64, 64) @ torch.ones(64, 64); determinism.enable('cpu'); print(mkl_mode())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MKL_CBWR": "COMPATIBLE"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "COMPATIBLE"


@pytest.mark.skipif(mkl_mode() != "OFF", reason="this process's MKL already runs in a reproducible mode")
def test_after_the_first_product_the_mode_is_refused_and_nothing_changes():
    torch.ones(64, 64) @ torch.ones(64, 64)  # MKL has run in this process: its mode is fixed
    with pytest.raises(ConfigError, match="train.deterministic"):
        determinism.enable("cpu")
    assert not torch.are_deterministic_algorithms_enabled()
    assert mkl_mode() == "OFF"


def test_the_cli_refuses_it_in_one_line_only_where_it_cannot_take(tmp_path):
    # the CLI trains in a fresh process, so there it takes; a dry run checks it without training
    done = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--preset", "tiny", "--dry-run",
                           "--set", "train.deterministic=true", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    bad = _train(tmp_path / "r", "train.deterministic=maybe")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "train.deterministic" in bad.stderr


def test_pinned_kernels_take_the_first_variant_untimed():
    calls = []

    def variant(name):
        return lambda: calls.append(name) or torch.zeros(1)

    kernels.pin_first(True)
    try:
        assert kernels.fastest("test.pinned", {"a": variant("a"), "b": variant("b")}, ((1,),)) == "a"
    finally:
        kernels.pin_first(False)
    assert calls == []  # nothing was run, so nothing was timed
