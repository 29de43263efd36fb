import subprocess
import sys
from pathlib import Path

import pytest

import grokscope
from grokscope.cli import main

def test_train_prints_headline(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--set", "train.epochs=20", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "grokking epoch" in out and str(tmp_path / "r") in out


def test_seeds_train_an_ensemble_of_ordinary_runs(tmp_path):
    assert main(["train", "--preset", "tiny", "--set", "train.epochs=20", "--seeds", "0-2", "--out", str(tmp_path / "e")]) == 0
    runs = [grokscope.load_run(tmp_path / "e" / f"seed{s}") for s in range(3)]
    assert [r.config.train.seed for r in runs] == [0, 1, 2]
    assert all(r.meta["ensemble_size"] == 3 for r in runs)
    assert runs[0].metrics.train_loss.iloc[-1] != runs[1].metrics.train_loss.iloc[-1]


def test_resume_rejects_extra_config(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--set", "optim.lr=1"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_of_missing_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and err.count("\n") == 1


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--set", "task.p=1"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("grokscope: error: task.p:")


@pytest.mark.parametrize("seeds, says", [("5-2", "a range must run upwards"), ("", "must look like"),
                                         ("0-5000", "at most 1024 seeds"), ("1,1", "names a seed twice")])
def test_bad_seeds_are_one_line(seeds, says, tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--seeds", seeds, "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: --seeds: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "e").exists()


def test_an_ensemble_folder_stands_for_its_members(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["train", "--preset", "tiny", "--set", "train.epochs=20", "--seeds", "0-1", "--out", str(out)]) == 0
    assert main(["analyze", str(out)]) == 0
    assert (out / "seed0" / "analysis" / "summary.json").is_file() and (out / "seed1" / "analysis" / "summary.json").is_file()
    assert main(["report", str(out), "--out", str(tmp_path / "cmp.html")]) == 0
    html = (tmp_path / "cmp.html").read_text()
    assert "comparison of 2 runs" in html
