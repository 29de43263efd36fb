"""Every CLI verb and public API entry point, walked with wrong types, missing and corrupted paths
and out-of-range values: one line naming the thing at fault, exit 2 (a grokscope error type from
the API), no traceback, and nothing written or changed on disk.

Each case runs in a fresh folder holding `run/` (a finished tiny run), `spec.yaml` (a valid
one-trial sweep) and the damage the case names; the folder's files and mtimes must be the same after.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import grokscope
from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.io import RunDirError

SPEC = "preset: tiny\nset: {train.epochs: 5}\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, analysed and reported, to copy into each case's folder."""
    run = grokscope.train(grokscope.get_preset("tiny").replace(**{"train.epochs": 20}), tmp_path_factory.mktemp("fz") / "run")
    grokscope.analyze(run)
    return run


def _damage(root: Path, kind: str) -> None:
    run = root / "run"
    ckpt = sorted((run / "checkpoints").iterdir())
    if kind == "config-garbage":
        (run / "config.json").write_text("{not json")
    elif kind == "config-list":
        (run / "config.json").write_text("[1, 2]")
    elif kind == "config-d_mlp":  # a config that disagrees with its checkpoints
        data = json.loads((run / "config.json").read_text())
        data["config"]["model"]["d_mlp"] = 48
        (run / "config.json").write_text(json.dumps(data))
    elif kind == "config-bad-value":
        data = json.loads((run / "config.json").read_text())
        data["config"]["optim"]["lr"] = "fast"
        (run / "config.json").write_text(json.dumps(data))
    elif kind == "metrics-garbage":
        (run / "metrics.parquet").write_bytes(b"PAR1 nonsense")
    elif kind == "split-garbage":
        (run / "split.json").write_text('{"train": [1, 2')
    elif kind == "checkpoints-truncated":
        for p in ckpt:
            p.write_bytes(p.read_bytes()[:100])
    elif kind == "no-checkpoints":
        shutil.rmtree(run / "checkpoints")
    elif kind == "summary-garbage":
        (run / "analysis" / "summary.json").write_text("{")
    elif kind == "spec-garbage":
        (root / "spec.yaml").write_text("grid: [unclosed")
    elif kind == "spec-list":
        (root / "spec.yaml").write_text("- 1\n- 2\n")
    elif kind == "spec-unknown-key":
        (root / "spec.yaml").write_text(SPEC + "gird: {optim.lr: [1]}\n")
    elif kind == "file":
        (root / "afile").write_text("x")
    elif kind == "empty-dir":
        (root / "empty").mkdir()
    elif kind == "yaml-garbage":
        (root / "cfg.yaml").write_text("task: {p: [")
    elif kind == "yaml-list":
        (root / "cfg.yaml").write_text("- 1\n")


@pytest.fixture
def case_dir(tmp_path, finished):
    shutil.copytree(finished, tmp_path / "run")
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path


def _snapshot(root: Path) -> dict:
    """Every file and folder with its mtime and size; a run's .lock (the last locker's pid) is left out."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.name != ".lock"}


# (damage, argv): every one must exit 2 with one line
CLI_CASES = [
    # no verb, unknown verbs and flags
    (None, []), (None, ["fly"]), (None, ["train", "--no-such-flag"]), (None, ["analyze"]),
    # train: presets, --set, files, values
    (None, ["train", "--preset", "nosuch"]), (None, ["train", "--set", "optim.lr"]), (None, ["train", "--set", "optim.rl=1"]),
    (None, ["train", "--set", "optim.lr=abc"]), (None, ["train", "--set", "optim.lr=-1"]), (None, ["train", "--set", "optim.lr=nan"]),
    (None, ["train", "--set", "task.frac_train=2"]), (None, ["train", "--set", "task.p=1"]), (None, ["train", "--set", "train.epochs=1.5"]),
    (None, ["train", "--set", "train.epochs=-3"]), (None, ["train", "--set", "model.n_layers=0"]),
    (None, ["train", "--set", "model.act_fn=tanhh"]), (None, ["train", "--set", "train.device=tpu"]),
    (None, ["train", "--set", "interventions=[{kind: nope}]"]), (None, ["train", "--set", "interventions=7"]),
    (None, ["train", "missing.yaml"]), ("yaml-garbage", ["train", "cfg.yaml"]), ("yaml-list", ["train", "cfg.yaml"]),
    (None, ["train", "run"]), (None, ["train", "--preset", "tiny", "--seeds", "x"]), (None, ["train", "--preset", "tiny", "--seeds", "-1"]),
    (None, ["train", "--preset", "tiny", "--out", "run"]), ("file", ["train", "--preset", "tiny", "--out", "afile"]),
    ("file", ["train", "--preset", "tiny", "--out", "afile/sub"]),
    # train --resume on missing and damaged runs
    (None, ["train", "--resume", "nowhere"]), ("config-garbage", ["train", "--resume", "run"]),
    ("config-list", ["train", "--resume", "run"]), ("config-bad-value", ["train", "--resume", "run"]),
    ("split-garbage", ["train", "--resume", "run"]), ("file", ["train", "--resume", "afile"]),
    # analyze
    (None, ["analyze", "nowhere"]), ("file", ["analyze", "afile"]), ("empty-dir", ["analyze", "empty"]),
    ("config-garbage", ["analyze", "run"]), ("config-list", ["analyze", "run"]), ("config-d_mlp", ["analyze", "run"]),
    ("config-bad-value", ["analyze", "run"]), ("metrics-garbage", ["analyze", "run"]), ("split-garbage", ["analyze", "run"]),
    ("checkpoints-truncated", ["analyze", "run"]), ("no-checkpoints", ["analyze", "run"]),
    (None, ["analyze", "run", "--max-checkpoints", "abc"]), (None, ["analyze", "run", "--max-checkpoints", "0"]),
    (None, ["analyze", "run", "--threshold", "2"]), (None, ["analyze", "run", "--threshold", "nan"]),
    (None, ["analyze", "run", "--threshold", "x"]),
    # report
    (None, ["report", "nowhere"]), ("file", ["report", "afile"]), ("empty-dir", ["report", "empty"]),
    ("config-garbage", ["report", "run"]), ("config-d_mlp", ["report", "run"]),
    ("split-garbage", ["report", "run"]), ("file", ["report", "run", "--out", "afile/x.html"]),
    ("file", ["report", "run", "--png", "afile"]), (None, ["report", "run", "nowhere", "--out", "c.html"]),
    # sweep
    (None, ["sweep", "missing.yaml"]), ("spec-garbage", ["sweep", "spec.yaml"]), ("spec-list", ["sweep", "spec.yaml"]),
    ("spec-unknown-key", ["sweep", "spec.yaml"]), (None, ["sweep", "spec.yaml", "--workers", "0"]),
    (None, ["sweep", "spec.yaml", "--threads", "-1"]), (None, ["sweep", "spec.yaml", "--group", "0"]),
    (None, ["sweep", "spec.yaml", "--workers", "two"]), (None, ["sweep", "spec.yaml", "--backend", "slurm"]),
    ("file", ["sweep", "spec.yaml", "--out", "afile"]), (None, ["sweep", "spec.yaml", "--out", "run"]),
    (None, ["sweep", "run"]),
    # runs
    (None, ["runs", "nowhere"]), ("file", ["runs", "afile"]), (None, ["runs", ".", "--where", "nonsense ((("]),
    (None, ["runs", ".", "--where", "no_such_column > 1"]), (None, ["runs", ".", "--columns", "nope"]),
    # demo
    (None, ["demo", "--set", "task.p=1"]), (None, ["demo", "--set", "nokey=1"]), (None, ["demo", "--out", "run"]),
    ("file", ["demo", "--out", "afile"]),
]


@pytest.mark.parametrize("damage, argv", CLI_CASES, ids=[" ".join([d or "-", *a]) for d, a in CLI_CASES])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(damage, argv, case_dir, capsys, monkeypatch):
    monkeypatch.chdir(case_dir)
    if damage:
        _damage(case_dir, damage)
    before = _snapshot(case_dir)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert err.startswith("grokscope: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not any(f"{e}:" in err for e in ("Error", "Exception", "KeyError", "TypeError")), err
    assert _snapshot(case_dir) == before


def _api_cases(root: Path):
    from grokscope.analysis import load_analysis
    from grokscope.sweeps import index_runs, load_spec, query_runs

    tiny = grokscope.get_preset("tiny")
    run = grokscope.load_run(root / "run")
    return [
        ("train a string", lambda: grokscope.train("tiny", root / "x")),
        ("train a dict", lambda: grokscope.train({"task": {"p": 5}}, root / "x")),
        ("train into a finished run", lambda: grokscope.train(tiny, root / "run")),
        ("train resume nowhere", lambda: grokscope.train(tiny, root / "nowhere", resume=True)),
        ("train_ensemble mixed", lambda: grokscope.train_ensemble([tiny, tiny.replace(**{"model.d_mlp": 32})], [root / "a", root / "b"])),
        ("train_ensemble mismatched outs", lambda: grokscope.train_ensemble([tiny, tiny], [root / "a"])),
        ("replace unknown key", lambda: tiny.replace(**{"optim.rl": 1})),
        ("replace bad value", lambda: tiny.replace(**{"optim.lr": "fast"})),
        ("get_preset unknown", lambda: grokscope.get_preset("nosuch")),
        ("make_config missing file", lambda: grokscope.make_config(root / "missing.yaml")),
        ("from_dict a list", lambda: grokscope.RunConfig.from_dict([1])),
        ("load_run nowhere", lambda: grokscope.load_run(root / "nowhere")),
        ("load_run a file", lambda: grokscope.load_run(root / "spec.yaml")),
        ("checkpoint not saved", lambda: run.checkpoint(7)),
        ("params not saved", lambda: run.params(-1)),
        ("analysis not written", lambda: run.analysis("nosuch")),
        ("loss_fn bad split", lambda: run.loss_fn("validation")),
        ("analyze nowhere", lambda: grokscope.analyze(root / "nowhere")),
        ("analyze a number", lambda: grokscope.analyze(42)),
        ("analyze max_checkpoints 0", lambda: grokscope.analyze(root / "run", max_checkpoints=0)),
        ("analyze threads 0", lambda: grokscope.analyze(root / "run", threads=0)),
        ("analyze unknown analysis", lambda: grokscope.analyze(root / "run", analyses=["nosuch"])),
        ("analyze unknown option", lambda: grokscope.analyze(root / "run", colour="red")),
        ("load_analysis unknown", lambda: load_analysis(root / "run", "nosuch")),
        ("report nothing", lambda: grokscope.report([])),
        ("report nowhere", lambda: grokscope.report([root / "nowhere"])),
        ("demo bad override", lambda: grokscope.demo(root / "d", {"task.frac_train": 0})),
        ("sweep bad spec", lambda: grokscope.sweep({"grid": {"optim.lr": []}}, root / "s")),
        ("sweep bad backend", lambda: grokscope.sweep(root / "spec.yaml", root / "s", backend="slurm")),
        ("sweep workers 0", lambda: grokscope.sweep(root / "spec.yaml", root / "s", workers=0)),
        ("load_spec missing", lambda: load_spec(root / "missing.yaml")),
        ("runs nowhere", lambda: grokscope.runs(root / "nowhere")),
        ("runs bad where", lambda: query_runs(root, "((")),
        ("index_runs a file", lambda: index_runs(root / "spec.yaml")),
    ]



def test_api_bad_input_raises_one_line_grokscope_errors(case_dir, monkeypatch):
    """Each API mistake raises ConfigError (bad values) or RunDirError (paths and files), one line, writing nothing."""
    monkeypatch.chdir(case_dir)
    before = _snapshot(case_dir)
    wrong = []
    for name, call in _api_cases(case_dir):
        try:
            call()
        except (ConfigError, RunDirError) as err:
            msg = str(err)
            if "\n" in msg or not msg or "Traceback" in msg:
                wrong.append(f"{name}: message {msg!r}")
        except Exception as err:  # noqa: BLE001 - the test's point: anything else is a leak
            wrong.append(f"{name}: {type(err).__name__}: {err}")
        else:
            wrong.append(f"{name}: no error")
    assert wrong == [], "\n".join(wrong)
    assert _snapshot(case_dir) == before


def test_a_report_of_a_run_with_unreadable_metrics_says_so(case_dir, capsys, monkeypatch):
    """By design a damaged file costs only the sections that need it (report/data.py): exit 0, the
    reason in the page where the curves would be, and on stderr."""
    monkeypatch.chdir(case_dir)
    _damage(case_dir, "metrics-garbage")
    assert main(["report", "run"]) == 0
    page = (case_dir / "run" / "report.html").read_text()
    assert "metrics.parquet is not a readable parquet file" in page
