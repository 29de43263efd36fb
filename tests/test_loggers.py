"""Experiment loggers (issue 16): what a run logs to TensorBoard and W&B is what its run directory holds.

Each backend's test writes through the real package and reads the values back from its files:
TensorBoard's event files with its own reader, W&B's offline run file record by record.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

import pandas as pd
import pytest

import grokscope
from grokscope.config import ConfigError
from grokscope.loggers import check_backend


def tiny(**overrides):
    return grokscope.get_preset("tiny").replace(**{"train.epochs": 40, "train.progress": False, **overrides})


def test_tensorboard_holds_every_metrics_row_and_the_progress_table(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = grokscope.train(tiny(**{"train.log": "tensorboard"}), tmp_path / "r")
    result = grokscope.analyze(run)
    assert subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(run), "--log", "tensorboard"],
                          capture_output=True, timeout=300).returncode == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    metrics = pd.read_parquet(run / "metrics.parquet")
    logged = events.Scalars("metrics/test_loss")
    assert [e.step for e in logged] == metrics.step.tolist()
    assert [e.value for e in logged] == pytest.approx(metrics.test_loss.tolist(), rel=1e-6)
    progress = events.Scalars("progress/restricted_loss" if "restricted_loss" in result.progress else "progress/train_loss")
    assert [e.step for e in progress] == result.progress.step.tolist()


def _wandb_records(path):
    """The protobuf records of a W&B run file: a 7-byte header, then LevelDB-style 32 KiB blocks of
    chunks (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
    return out


def _finished_records(path, timeout=60.0):
    """The records once the run's exit record is written: W&B's service writes the file after
    run.finish() returns (seen: a 7-byte file at first, complete ~1 s later)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_wandb_offline_holds_every_metrics_row_and_keeps_one_run_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = grokscope.train(tiny(**{"train.log": "wandb"}), tmp_path / "r")
    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    history = {}
    for record in _finished_records(files[0]):
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[row["_step"]] = row
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert sorted(history) == metrics.step.tolist()
    assert [history[s]["metrics/train_loss"] for s in metrics.step] == pytest.approx(metrics.train_loss.tolist(), rel=1e-12)
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert files[0].name == f"run-{run_id}.wandb"
    from grokscope.loggers import log_progress

    assert log_progress("wandb", run, grokscope.analyze(run).progress) > 0  # the same W&B run id, a later session
    assert all(f.name == f"run-{run_id}.wandb" for f in (run / "wandb").glob("offline-run-*/run-*.wandb"))


def test_a_missing_package_or_an_unknown_backend_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"train.log.*grokscope\[wandb\]"):
        check_backend("wandb")
    with pytest.raises(ConfigError, match="train.log: must be one of none, wandb, tensorboard"):
        check_backend("mlflow")
    for argv, flag in ((["train", "--preset", "tiny", "--log", "mlflow", "--out", str(tmp_path / "t")], "train.log"),
                       (["analyze", str(tmp_path / "t"), "--log", "mlflow"], "--log")):
        done = subprocess.run([sys.executable, "-m", "grokscope.cli", *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and flag in done.stderr
    assert not (tmp_path / "t").exists()


def test_overwrite_clears_a_logged_run(tmp_path):
    pytest.importorskip("tensorboard")
    run = grokscope.train(tiny(**{"train.log": "tensorboard"}), tmp_path / "r")
    grokscope.train(tiny(), run, overwrite=True)
    assert not (run / "tensorboard").exists()


def test_wandb_groups_an_ensembles_members_and_a_sweeps_trials(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from grokscope.io import atomic_write_json
    from grokscope.loggers import run_group

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny(**{"train.log": "wandb"})
    members = grokscope.train_ensemble([cfg, cfg.replace(**{"train.seed": 1})], [tmp_path / "ens" / "s0", tmp_path / "ens" / "s1"])
    for member in members:
        (file,) = (member / "wandb").glob("offline-run-*/run-*.wandb")
        runs = [r.run for r in _finished_records(file) if r.WhichOneof("record_type") == "run"]
        assert runs and {r.run_group for r in runs} == {"ensemble ens"}
        assert run_group(member) == "ensemble ens"  # what a later `analyze --log wandb` uses
    lone = grokscope.train(tiny(), tmp_path / "lone")
    assert run_group(lone) is None
    atomic_write_json(tmp_path / "sweep.json", {"name": "wd sweep"})
    assert run_group(lone) == "sweep wd sweep"
