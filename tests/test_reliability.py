"""Reliability and safety: kills, damaged files, full disks, NaNs, locking and untrusted run directories.

Every test compares against real, uninterrupted runs of a small config (the `tiny` preset, shortened),
so "resumed" always means "bit-identical to never having stopped": every checkpoint's tensors and
bytes, the last states, and the metrics DataFrame exactly. docs/reliability.md lists what each proves.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import grokscope
import grokscope.io
from grokscope.cli import main
from grokscope.io import RunDirError
from grokscope.run import load_run
from grokscope.runstore import CorruptFileError, RunLockedError, RunStore, step_name
from grokscope.trainer import Callback, Trainer, TrainingError, train

# One intra-op thread, in this process and in the subprocesses: with 2 cores shared by other jobs, torch's
# thread barriers make multi-threaded CPU runs 10x slower. Bit-identity holds for any fixed thread count.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# 120 full-batch steps; checkpoints at 0 1 2 4 8 16 20 40 60 80 100 120; evaluations every 10 (+ log-spaced).
SHORT = {"train.epochs": 120, "train.checkpoint_every": 20, "train.progress": False}
CLI = [sys.executable, "-m", "grokscope.cli"]


def tiny(**over) -> grokscope.RunConfig:
    return grokscope.get_preset("tiny").replace(**{**SHORT, **over})


def set_args(over: dict) -> list[str]:
    return [a for k, v in over.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


def train_args(out: Path, over: dict = SHORT) -> list[str]:
    return ["train", "--preset", "tiny", *set_args(over), "--out", str(out)]


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory) -> Path:
    """The uninterrupted reference for everything trained in this process."""
    return train(tiny(), tmp_path_factory.mktemp("ref") / "run")


# -- comparing runs ---------------------------------------------------------------------------

def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical results: every checkpoint (tensors and file bytes), the last states, metrics, split, config."""
    sa, sb = RunStore(a), RunStore(b)
    steps = sa.checkpoint_steps()
    assert steps == sb.checkpoint_steps()
    assert len(steps) >= 10, "too few checkpoints to compare: the runs did not train"
    for step in steps:
        ta, tb = sa.load_checkpoint(step), sb.load_checkpoint(step)
        assert ta.keys() == tb.keys() and len(ta) >= 5
        for name in ta:
            assert ta[name].dtype == tb[name].dtype and ta[name].shape == tb[name].shape, (step, name)
            assert tensor_bytes(ta[name]) == tensor_bytes(tb[name]), f"step {step}: {name} differs"
        assert st_metadata(sa.checkpoint_path(step)) == st_metadata(sb.checkpoint_path(step))
    first, last = sa.load_checkpoint(steps[0]), sa.load_checkpoint(steps[-1])
    assert not torch.equal(first["blocks.0.mlp.W_in"], last["blocks.0.mlp.W_in"]), "no training happened"
    assert sa.state_steps() == sb.state_steps() and sa.state_steps()[-1] == steps[-1]
    for step in sa.state_steps():
        (xa, ma), (xb, mb) = sa.load_state(step), sb.load_state(step)
        assert ma == mb and xa.keys() == xb.keys()
        assert all(tensor_bytes(xa[k]) == tensor_bytes(xb[k]) for k in xa)
    da, db = sa.load_metrics(), sb.load_metrics()
    assert len(da) >= 15 and da.step.iloc[-1] == steps[-1]
    assert da.step.is_unique and da.step.is_monotonic_increasing
    pd.testing.assert_frame_equal(da, db, check_exact=True)
    assert sa.read_split() == sb.read_split()
    assert sa.read_config()[0] == sb.read_config()[0]
    assert not list(Path(b).rglob("*.tmp")), "temp files left behind"


def st_metadata(path: Path) -> dict:
    """A safetensors file's metadata (step, format, sha256). Compared instead of file bytes: safetensors
    writes the metadata map in hash order, which varies between processes."""
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def same_tensors(a: Path, b: Path) -> bool:
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        return fa.metadata() == fb.metadata() and set(fa.keys()) == set(fb.keys()) and all(
            tensor_bytes(fa.get_tensor(k)) == tensor_bytes(fb.get_tensor(k)) for k in fa.keys())


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """name -> (bytes, mtime_ns, inode): a rewrite (even with equal bytes) changes the inode and mtime."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


def all_finite(run: Path) -> bool:
    store = RunStore(run)
    tensors = [t for s in store.checkpoint_steps() for t in store.load_checkpoint(s).values()]
    tensors += [t for s in store.state_steps() for t in store.load_state(s)[0].values()]
    return bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


class Crash(Exception):
    """A simulated crash at a given step (the process dies; the run directory is what it is)."""


class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_start(self, state) -> None:
        if state.step == self.step:
            raise Crash(state.step)


def crashed_run(tmp_path: Path, step: int = 70, name: str = "crashed") -> Path:
    """A run stopped at `step` (120 planned): states at 40 and 60, checkpoints up to 60."""
    out = tmp_path / name
    with pytest.raises(Crash):
        train(tiny(), out, callbacks=[CrashAt(step)])
    return out


# -- 1. SIGKILL at random moments, resume until done ------------------------------------------

def _newest_state(run: Path) -> int:
    return max(RunStore(run).state_steps(), default=-1)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    """`grokscope train` killed (SIGKILL) 6 times at seeded-random moments, resumed each time with --resume."""
    over = {**SHORT, "train.epochs": 800, "train.checkpoint_every": 20}
    ref, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([*CLI, *train_args(ref, over)], check=True, capture_output=True, env=SUBPROCESS_ENV)
    rng = random.Random(20261121)
    kills, launches, n_kills = 0, 0, 6
    while True:
        resuming = (run / "config.json").exists()
        cmd = [*CLI, "train", "--resume", str(run)] if resuming else [*CLI, *train_args(run, over)]
        before = _newest_state(run)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=SUBPROCESS_ENV)
        launches += 1
        if kills < n_kills:
            if rng.random() < 0.25:  # anywhere: importing, restoring, training or mid-write
                time.sleep(rng.uniform(0.0, 2.5))
            else:  # once a new state is on disk (progress was made), after a random delay
                deadline = time.monotonic() + 120  # a hang guard, not a speed check
                while proc.poll() is None and _newest_state(run) <= before:
                    assert time.monotonic() < deadline, "no progress"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.15))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                assert proc.returncode == -signal.SIGKILL
                kills += 1
                continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        break
    assert kills == n_kills and launches == n_kills + 1
    assert_same_run(ref, run)


def test_start_killed_before_config_json_can_be_started_again(tmp_path):
    """A kill between split.json and config.json leaves no run; a fresh `train --out` takes the dir over."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("12345\n")
    (out / "split.json").write_text('{"train": [1, 2')  # even half-written: nothing reads it
    (out / ".config.json.x1y2.tmp").write_text("{")
    train(tiny(), out)
    assert_same_run(train(tiny(), tmp_path / "ref"), out)
    # ... but a directory with anything else in it is never taken over
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="already holds files"):
        train(tiny(), other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_stale_temp_files_of_a_killed_writer_are_removed_on_resume(tmp_path, ref_run):
    run = crashed_run(tmp_path)
    for rel in ("checkpoints/.step_000000080.safetensors.abc.tmp", "state/.step_000000080.safetensors.def.tmp",
                ".metrics.parquet.ghi.tmp"):
        (run / rel).write_bytes(b"half a file")
    (run / ".report.html.jkl.tmp").write_bytes(b"someone else's")  # not the trainer's: left alone
    train(tiny(), run, resume=True)
    assert sorted(p.name for p in run.rglob("*.tmp")) == [".report.html.jkl.tmp"]
    (run / ".report.html.jkl.tmp").unlink()
    assert_same_run(ref_run, run)


# -- 2. damaged checkpoints and states --------------------------------------------------------

def damage(path: Path, kind: str, other: Path | None = None) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bitflip":  # one bit in the last tensor's bytes: only the sha256 can tell
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:])
    elif kind == "header":
        path.write_bytes(data[:8] + b"#" * 16 + data[24:])
    elif kind == "no_sha256":
        tensors = RunStore(path.parent.parent).load_checkpoint(int(path.name[5:-12])) if path.parent.name == "checkpoints" \
            else RunStore(path.parent.parent).load_state(int(path.name[5:-12]))[0]
        save_file(tensors, str(path), metadata={"step": path.name[5:-12].lstrip("0") or "0"})
    elif kind == "other_step":  # a valid file, but of another step
        shutil.copyfile(other, path)
    else:
        raise AssertionError(kind)
    assert path.read_bytes() != data


DAMAGE = ["truncated", "empty", "bitflip", "header", "no_sha256", "other_step"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_is_detected_naming_the_file(tmp_path, ref_run, kind):
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    path = RunStore(run).checkpoint_path(40)
    damage(path, kind, other=RunStore(run).checkpoint_path(60))
    r = load_run(run)
    for read in (lambda: r.params(40), lambda: r.checkpoint(40)):
        with pytest.raises(CorruptFileError) as err:
            read()
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    # the neighbours still load and are exactly the reference's
    ok = load_run(ref_run).params(60)
    assert all(torch.equal(r.params(60)[k], ok[k]) for k in ok)


@pytest.mark.parametrize("kind", ["truncated", "bitflip", "header", "no_sha256", "wrong_shapes", "both"])
def test_resume_falls_back_past_damaged_state_and_never_touches_earlier_checkpoints(tmp_path, ref_run, kind, caplog):
    run = crashed_run(tmp_path)
    store = RunStore(run)
    assert store.state_steps() == [40, 60] and store.checkpoint_steps()[-1] == 60
    newest = store.state_dir / step_name(60)
    if kind == "wrong_shapes":  # passes its sha256, but does not fit the model
        tensors, meta = store.load_state(60)
        tensors["param.embed.W_E"] = tensors["param.embed.W_E"][:5].clone()
        store.save_state(60, tensors, {k: v for k, v in meta.items() if k not in ("step", "sha256")})
        assert store.state_steps() == [40, 60]
    elif kind == "both":
        damage(newest, "truncated")
        damage(store.state_dir / step_name(40), "bitflip")
    else:
        damage(newest, kind)
    fallback = 0 if kind == "both" else 40
    before = snapshot(store.checkpoint_dir)
    before_dir = shutil.copytree(store.checkpoint_dir, tmp_path / "before")
    with caplog.at_level(logging.WARNING, logger="grokscope"):
        train(tiny(), run, resume=True)
    assert str(newest) in caplog.text and "damaged" in caplog.text
    after = snapshot(store.checkpoint_dir)
    for name, (data, mtime, inode) in before.items():
        if int(name[5:-12]) <= fallback:
            assert after[name] == (data, mtime, inode), f"{name} was touched"
        else:  # recomputed after the fallback point, to the same tensors and metadata
            assert same_tensors(before_dir / name, store.checkpoint_dir / name)
    assert_same_run(ref_run, run)


def test_damaged_metrics_stop_resume_with_a_clear_error_and_no_lock_held(tmp_path):
    run = crashed_run(tmp_path)
    (run / "metrics.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptFileError, match="metrics.parquet"):
        train(tiny(), run, resume=True)
    store = RunStore(run)
    store.acquire_lock()  # the failed resume released its lock
    store.release_lock()
    # metrics that lack rows before the state's step (e.g. an older copy) are refused, not silently used
    df = RunStore(tmp_path / "x").load_metrics()
    grokscope.io.atomic_write_parquet(run / "metrics.parquet", df)
    with pytest.raises(CorruptFileError, match="lacks rows before step 60"):
        train(tiny(), run, resume=True)


# -- 3. disk full and unwritable directories --------------------------------------------------

class _FullFile:
    """A file whose write stores half the data, then fails as a full disk does."""

    def __init__(self, f) -> None:
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)


class _FullDisk:
    """Stands in for `os` inside grokscope.io: the n-th atomic write hits ENOSPC (and every later one, if `stay`)."""

    def __init__(self, fail_at: int, stay: bool = False) -> None:
        self.fail_at, self.stay, self.calls = fail_at, stay, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *args, **kwargs):
        self.calls += 1
        f = os.fdopen(fd, mode, *args, **kwargs)
        return _FullFile(f) if self.calls == self.fail_at or (self.stay and self.calls > self.fail_at) else f


# 38 atomic writes in a SHORT run: split, config, then (checkpoint, metrics, state) at 12 steps.
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5, 21, 37, 38])
def test_disk_full_gives_one_line_and_a_resumable_run(tmp_path, ref_run, capsys, monkeypatch, fail_at):
    run = tmp_path / "run"
    disk = _FullDisk(fail_at)
    monkeypatch.setattr(grokscope.io, "os", disk)
    assert main(train_args(run)) == 1
    monkeypatch.undo()
    assert disk.calls == fail_at
    line = one_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(run) in line
    assert not list(tmp_path.rglob("*.tmp"))
    if fail_at <= 2:  # before config.json: no run, and no directory either
        assert not run.exists()
        assert main(train_args(run)) == 0
    else:
        r = load_run(run)  # consistent: config, split, metrics and every checkpoint read back verified
        assert all(r.params(s) for s in r.steps) and list(r.metrics.step) == sorted(r.metrics.step)
        assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert_same_run(ref_run, run)


@contextmanager
def _tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts (the monkeypatched ENOSPC tests cover the logic)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_real_full_tmpfs_then_resume_after_space_is_freed(tmp_path, ref_run, capsys):
    with _tmpfs(tmp_path / "mnt", "size=320k") as mnt:
        run = mnt / "run"
        assert main(train_args(run)) == 1
        line = one_line(capsys.readouterr().err)
        assert "No space left on device" in line and str(run) in line
        steps = RunStore(run).checkpoint_steps()
        assert 0 < len(steps) < 12 and not list(mnt.rglob("*.tmp"))
        assert main(["train", "--resume", str(run)]) == 1  # still full: fails the same clear way
        one_line(capsys.readouterr().err)
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        assert main(["train", "--resume", str(run)]) == 0
        assert_same_run(ref_run, run)


def test_unwritable_output_gives_one_line_and_exit_1(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(train_args(afile / "run")) == 2  # a path under a file is the user's to fix: bad input
    line = one_line(capsys.readouterr().err)
    assert str(afile / "run") in line and f"{afile} is a file, not a folder" in line
    if os.geteuid() == 0:
        ctx = _tmpfs(tmp_path / "ro", "ro,size=1m")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        ctx = contextmanager(lambda: (yield tmp_path / "ro"))()
    with ctx as ro:
        assert main(train_args(ro / "run")) == 1
        line = one_line(capsys.readouterr().err)
        assert str(ro / "run") in line and ("Read-only" in line or "Permission denied" in line)
        assert not (ro / "run").exists()


def test_resume_of_a_read_only_run_is_refused_and_leaves_it_resumable(tmp_path, ref_run, capsys):
    src = crashed_run(tmp_path)
    with _tmpfs(tmp_path / "mnt", "size=8m") as mnt:
        run = mnt / "run"
        shutil.copytree(src, run)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        assert main(["train", "--resume", str(run)]) == 1
        line = one_line(capsys.readouterr().err)
        assert str(run) in line and "Read-only" in line
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert main(["train", "--resume", str(run)]) == 0
        assert_same_run(ref_run, run)


# -- 4. NaN / inf ------------------------------------------------------------------------------

class NaNWeightsAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_start(self, state) -> None:
        if state.step == self.step:
            with torch.no_grad():
                state.params["blocks.0.mlp.W_in"][0, 3, 5] = float("nan")


@pytest.mark.parametrize("mode", ["stop", "skip"])
@pytest.mark.parametrize("at", [50, 60, 120])  # between checkpoints, at one, at the final (no-update) step
def test_nan_weights_stop_the_run_and_no_checkpoint_holds_a_nan(tmp_path, ref_run, mode, at):
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(tiny(**{"train.on_nonfinite": mode}), run, callbacks=[NaNWeightsAt(at)])
    last = 40 if at == 50 else at - 20
    assert f"non-finite weights at step {at}" in str(err.value) and f"last good checkpoint is step {last}" in str(err.value)
    store = RunStore(run)
    assert store.checkpoint_steps()[-1] == last and store.state_steps()[-1] == last
    assert all_finite(run)
    assert store.load_metrics().step.max() == last
    for step in store.checkpoint_steps():  # what was written is the reference's, bit for bit
        assert same_tensors(store.checkpoint_path(step), RunStore(ref_run).checkpoint_path(step))


def test_absurd_lr_through_the_cli_stops_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(run, {**SHORT, "optim.lr": 1e30})) == 1
    line = one_line(capsys.readouterr().err)
    assert "non-finite" in line and "last good checkpoint" in line and str(run) in line
    assert all_finite(run) and RunStore(run).checkpoint_steps()


class _PoisonedEngine:
    """The training forward of selected steps returns NaN logits (a transient overflow, weights untouched)."""

    def __init__(self, engine, steps) -> None:
        self.engine, self.steps, self.armed, self.poisoned = engine, set(steps), False, []
        self.name = engine.name

    def logits(self, params, tokens):
        out = self.engine.logits(params, tokens)
        if self.armed:  # the first call of a step is its training forward
            self.armed = False
            return out * float("nan")
        return out


class _Arm(Callback):
    def __init__(self) -> None:
        self.engine = None

    def on_step_start(self, state) -> None:
        self.engine.armed = state.step in self.engine.steps
        if self.engine.armed:
            self.engine.poisoned.append(state.step)


def _poisoned_trainer(cfg, out, steps) -> tuple[Trainer, _PoisonedEngine]:
    arm = _Arm()
    trainer = Trainer([cfg], [out], callbacks=[arm])
    trainer.engine = arm.engine = _PoisonedEngine(trainer.engine, steps)
    return trainer, arm.engine


def test_nan_loss_stops_by_default_keeping_the_last_good_checkpoint(tmp_path, ref_run):
    trainer, engine = _poisoned_trainer(tiny(), tmp_path / "run", [50])
    with pytest.raises(TrainingError, match="non-finite loss at step 50.*last good checkpoint is step 40.*on_nonfinite=skip"):
        trainer.run()
    assert engine.poisoned == [50]
    store = RunStore(tmp_path / "run")
    assert store.checkpoint_steps()[-1] == 40 and all_finite(tmp_path / "run")
    train(tiny(), tmp_path / "run", resume=True)  # and it resumes from there like any stopped run
    assert_same_run(ref_run, tmp_path / "run")


def test_on_nonfinite_skip_skips_exactly_the_bad_steps(tmp_path, ref_run):
    run = tmp_path / "run"
    trainer, engine = _poisoned_trainer(tiny(**{"train.on_nonfinite": "skip"}), run, [1, 50])
    trainer.run()
    assert engine.poisoned == [1, 50]
    store = RunStore(run)
    assert store.checkpoint_steps()[-1] == 120 and all_finite(run)
    p1, p2 = store.load_checkpoint(1), store.load_checkpoint(2)
    assert all(torch.equal(p1[k], p2[k]) for k in p1), "step 1 was not skipped"
    ref = RunStore(ref_run)
    assert same_tensors(ref.checkpoint_path(1), store.checkpoint_path(1))
    assert not torch.equal(ref.load_checkpoint(2)["embed.W_E"], p2["embed.W_E"])
    assert store.load_state(120)[1]["adam_t"] == "118"  # 120 steps, 2 skipped
    m = store.load_metrics()
    assert m.test_loss.map(math.isfinite).all() and m.step.iloc[-1] == 120


# -- 5. two writers ----------------------------------------------------------------------------

def test_second_writer_is_refused_by_the_lock(tmp_path, ref_run):
    run = tmp_path / "run"
    first = Trainer([tiny()], [run])  # holds the lock from here on
    with pytest.raises(RunLockedError, match="being written by another process"):
        Trainer([tiny()], [run], resume=True)
    first.run()
    assert_same_run(ref_run, run)
    train(tiny(), run, resume=True)  # lock released at the end


def test_second_cli_process_gets_exit_2_and_a_kill_releases_the_lock(tmp_path, capsys, ref_run):
    run = tmp_path / "run"
    long = {**SHORT, "train.epochs": 100000}
    first = subprocess.Popen([*CLI, *train_args(run, long)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SUBPROCESS_ENV)
    try:
        while not RunStore(run).state_steps():
            assert first.poll() is None
            time.sleep(0.02)
        second = subprocess.run([*CLI, "train", "--resume", str(run)], capture_output=True, text=True, env=SUBPROCESS_ENV)
        assert second.returncode == 2
        assert "being written by another process" in one_line(second.stderr) and str(run) in second.stderr
        assert main(["train", "--resume", str(run)]) == 2
        assert "being written by another process" in one_line(capsys.readouterr().err)
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    # SIGKILL releases the flock; the stale .lock file does not block anyone
    assert (run / ".lock").exists()
    store = RunStore(run)
    store.acquire_lock()
    store.release_lock()


# -- 6. untrusted run directories: nothing is unpickled ----------------------------------------

class Payload:
    """Unpickling this creates `marker`: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path: Path, marker: Path) -> None:
    torch.save({"embed.W_E": torch.zeros(3), "x": Payload(marker)}, path)


def test_the_pickle_payload_is_live(tmp_path):
    """Makes the tests below meaningful: loading the planted file with pickle runs the payload."""
    plant_pickle(tmp_path / "evil.pt", tmp_path / "proof")
    assert not (tmp_path / "proof").exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "proof").exists()


def test_pickles_in_a_run_directory_are_refused_and_never_executed(tmp_path, ref_run, capsys, caplog):
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    store = RunStore(run)
    # a checkpoint
    plant_pickle(store.checkpoint_path(60), marker)
    r = load_run(run)
    for read in (lambda: r.params(60), lambda: r.checkpoint(60)):
        with pytest.raises(CorruptFileError, match=str(store.checkpoint_path(60))):
            read()
    # extra pickle files where a loader might look for weights are ignored
    for name in ("model.pt", "step_000000060.pt", "pytorch_model.bin"):
        plant_pickle(store.checkpoint_dir / name, marker)
    assert 60 in r.steps and len(r.steps) == 12
    # a state: resume skips it (warning naming it) and falls back to the other one
    crashed = crashed_run(tmp_path)
    plant_pickle(RunStore(crashed).state_dir / step_name(60), marker)
    with caplog.at_level(logging.WARNING, logger="grokscope"):
        assert main(["train", "--resume", str(crashed)]) == 0
    assert str(RunStore(crashed).state_dir / step_name(60)) in caplog.text
    assert_same_run(ref_run, crashed)
    # metrics, config and split
    for name in ("metrics.parquet", "config.json", "split.json"):
        victim = tmp_path / f"v_{name}"
        shutil.copytree(ref_run, victim)
        plant_pickle(victim / name, marker)
        with pytest.raises(RunDirError, match=str(victim / name)):
            load_run(victim).metrics
        assert main(["train", "--resume", str(victim)]) == 2
        assert str(victim / name) in one_line(capsys.readouterr().err)
    assert not marker.exists()


def test_installed_pyarrow_does_not_unpickle_from_parquet():
    """CVE-2023-47248: pyarrow 0.14 to 14.0.0 unpickles extension-type metadata found in a parquet file."""
    import pyarrow

    version = tuple(int(x) for x in re.findall(r"\d+", pyarrow.__version__)[:3])
    assert version >= (14, 0, 1), f"pyarrow {pyarrow.__version__} runs code from untrusted parquet files"


@pytest.mark.parametrize("name, content, match", [
    ("config.json", b"{not json", "not valid JSON"),
    ("config.json", b"[1, 2]", "does not hold a grokscope run config"),
    ("config.json", None, "is missing"),
    ("config.json", b'{"config": {"task": {"p": 24, "op": "div"}}, "meta": {}}', "task.p: must be prime"),
    ("config.json", b'{"config": {"task": {"colour": 1}}, "meta": {}}', "task.colour: unknown key"),
    ("split.json", b"\xff\xfe", "not valid JSON"),
    ("split.json", b'{"train": [1, 2]}', "integer lists 'train' and 'test'"),
    ("split.json", b'{"train": [1, "2"], "test": [3]}', "integer lists 'train' and 'test'"),
    ("split.json", b'{"train": [1, 2], "test": [100000]}', "outside the task's table"),
    ("split.json", None, "is missing"),
    ("metrics.parquet", b"PAR1garbagePAR1", "not a readable parquet file"),
    ("metrics.parquet", "no_columns", "lacks columns"),
])
def test_malformed_run_files_give_clear_errors(tmp_path, ref_run, name, content, match):
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    if content is None:
        (run / name).unlink()
    elif content == "no_columns":
        pd.DataFrame({"step": [0], "loss": [1.0]}).to_parquet(run / name)
    else:
        (run / name).write_bytes(content)
    with pytest.raises(RunDirError) as err:
        load_run(run).metrics
    assert str(run / name) in str(err.value) and match in str(err.value) and "\n" not in str(err.value)


def test_resume_with_a_damaged_config_json_names_the_file(tmp_path, ref_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    (run / "config.json").write_text('{"config": {"optim": {"lr": -1}}, "meta": {}}')
    assert main(["train", "--resume", str(run)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(run / "config.json") in line and "optim.lr" in line


def test_progress_bar_shows_on_a_terminal_and_in_jupyter_only(monkeypatch):
    """Pipes and CI get no bar; a Jupyter kernel (stderr is no tty there) gets tqdm.auto's."""
    import types

    from grokscope.io import progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress_bar(10).disable
    assert progress_bar(10, enabled=False).disable
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert not progress_bar(10).disable
    assert progress_bar(10, enabled=False).disable
    fake.get_ipython = lambda: types.SimpleNamespace()  # IPython in a terminal, no kernel: as a plain terminal
    assert progress_bar(10).disable
