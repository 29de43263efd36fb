"""Training into a folder that already holds something: refused with the ways on, or replaced
with `overwrite` (only run files, only once locked); and `--dry-run`, which checks and writes nothing."""

from __future__ import annotations

import pytest

import grokscope
from grokscope.cli import main
from grokscope.io import RunDirError
from grokscope.runstore import RunLockedError, RunStore


def tiny(**overrides):
    return grokscope.get_preset("tiny").replace(**{"train.epochs": 20, **overrides})


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_stopped_run_is_refused_with_the_three_ways_on(tmp_path):
    run = grokscope.train(tiny(), tmp_path / "r")
    (run / "config.json").write_text((run / "config.json").read_text().replace('"epochs": 20', '"epochs": 40'))
    with pytest.raises(RunDirError, match=r"a run \(stopped at step 20 of 40\); continue it with --resume .*--out.*--overwrite"):
        grokscope.train(tiny(), run)


def test_overwrite_replaces_a_finished_run(tmp_path):
    run = grokscope.train(tiny(**{"train.epochs": 30}), tmp_path / "r")
    grokscope.analyze(run)
    (run / "report.html").write_text("old")
    assert grokscope.train(tiny(), run, overwrite=True) == run
    r = grokscope.load_run(run)
    assert r.config.train.epochs == 20 and r.steps[-1] == 20 and r.metrics.step.iloc[-1] == 20
    assert not (run / "analysis").exists() and not (run / "report.html").exists()  # nothing of the old run is left
    ref = grokscope.train(tiny(), tmp_path / "ref")
    assert r.metrics.drop(columns="epoch").equals(grokscope.load_run(ref).metrics.drop(columns="epoch"))


def test_overwrite_refuses_a_folder_with_other_files(tmp_path):
    run = grokscope.train(tiny(), tmp_path / "r")
    (run / "notes.txt").write_text("mine")
    before = _tree(run)
    with pytest.raises(RunDirError, match="holds 'notes.txt', which is not part of a run directory"):
        grokscope.train(tiny(), run, overwrite=True)
    assert _tree(run) == before


def test_overwrite_takes_a_folder_left_half_cleared_by_a_kill(tmp_path):
    run = grokscope.train(tiny(), tmp_path / "r")
    (run / "config.json").unlink()  # what a kill during the clearing leaves: config.json goes first
    with pytest.raises(RunDirError, match="already holds files"):
        grokscope.train(tiny(), run)
    grokscope.train(tiny(), run, overwrite=True)
    assert grokscope.load_run(run).steps[-1] == 20


def test_overwrite_waits_for_no_one_a_locked_run_is_left_alone(tmp_path):
    run = grokscope.train(tiny(), tmp_path / "r")
    before = _tree(run)
    holder = RunStore(run)
    holder.acquire_lock()  # another writer (flock conflicts across open files, even in one process)
    try:
        with pytest.raises(RunLockedError, match="being written by another process"):
            grokscope.train(tiny(), run, overwrite=True)
    finally:
        holder.release_lock()
    assert _tree(run) == before


@pytest.mark.parametrize("argv, says", [
    (["--resume", "{run}", "--overwrite"], "--resume RUN continues a run with its stored config; drop"),
    (["--preset", "tiny", "--out", "{file}"], "is a file, not a run directory"),
    (["--preset", "tiny", "--out", "{run}"], "already holds a finished run"),
])
def test_overwrite_and_out_mistakes_are_one_line(argv, says, tmp_path, capsys):
    run = grokscope.train(tiny(), tmp_path / "r")
    (tmp_path / "f").write_text("x")
    before = _tree(tmp_path)
    argv = [a.format(run=run, file=tmp_path / "f") for a in argv]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: ") and says in err and err.count("\n") == 1
    assert _tree(tmp_path) == before


def test_cli_overwrite(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--preset", "tiny", "--set", "train.epochs=20", "--out", out]) == 0
    assert main(["train", "--preset", "tiny", "--set", "train.epochs=10", "--out", out, "--overwrite"]) == 0
    assert grokscope.load_run(out).steps[-1] == 10


def test_dry_run_checks_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "nanda2023", "--seeds", "0-7", "--out", "runs/seeds", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would train runs/seeds/seed0 and 7 more" in out and "226,688 parameters" in out and "40000 steps" in out
    assert main(["demo", "--dry-run"]) == 0
    assert "12000 steps" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    # what a real start refuses, a dry run refuses too
    assert main(["train", "--preset", "tiny", "--set", "model.d_model=1000000", "--dry-run"]) == 2
    assert "model.d_model: training needs at least" in capsys.readouterr().err
    run = grokscope.train(tiny(), tmp_path / "r")
    assert main(["train", "--preset", "tiny", "--out", str(run), "--dry-run"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--out", str(run), "--dry-run", "--overwrite"]) == 0
    assert grokscope.load_run(run).steps[-1] == 20  # a dry run leaves the run it would replace alone
