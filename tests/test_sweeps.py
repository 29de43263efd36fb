"""Sweeps: spec expansion and its errors, local and Ray execution, resume after a kill, failures,
stacked groups, the run index and the sweep report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.config import parse_seeds
from grokscope.sweeps import index_runs, load_spec, query_runs, run_sweep, trial_status

SMALL = {"name": "small", "preset": "tiny", "set": {"train.epochs": 20, "train.checkpoint_every": 10},
         "grid": {"task.frac_train": [0.4, 0.6], "optim.weight_decay": [0.5, 1.0]}, "seeds": "0-1"}


def test_spec_expands_grid_trials_random_and_seeds():
    spec = load_spec({**SMALL, "trials": [{"optim.lr": 1e-3}, {"optim.lr": 3e-3}],
                      "random": {"n": 3, "seed": 1, "fields": {"optim.eps": {"log_uniform": [1e-9, 1e-7]},
                                                              "model.act_fn": {"choice": ["relu", "gelu"]}}}})
    assert len(spec.trials) == 2 * 2 * 2 * 3 * 2
    assert [t.id for t in spec.trials[:3]] == ["t0000", "t0001", "t0002"]
    first = spec.trials[0]
    assert first.overrides["task.frac_train"] == 0.4 and first.overrides["optim.lr"] == 1e-3
    assert first.config.task.frac_train == 0.4 and first.config.train.epochs == 20 and first.config.task.p == 23
    assert all(1e-9 <= t.config.optim.eps <= 1e-7 for t in spec.trials)
    assert spec.swept[:3] == ("task.frac_train", "optim.weight_decay", "optim.lr") and spec.swept[-1] == "train.seed"
    again = load_spec({**SMALL, "random": {"n": 3, "seed": 1, "fields": {"optim.eps": {"log_uniform": [1e-9, 1e-7]}}}})
    assert [t.config.optim.eps for t in again.trials] == [t.config.optim.eps for t in load_spec(again.raw).trials]


def test_set_overrides_join_the_specs_set_and_are_recorded():
    spec = load_spec(SMALL, {"train.epochs": 7, "optim.weight_decay": 9.0, "optim.lr": 2e-3})
    assert spec.raw["set"] == {"train.epochs": 7, "train.checkpoint_every": 10, "optim.weight_decay": 9.0, "optim.lr": 2e-3}
    assert all(t.config.train.epochs == 7 and t.config.optim.lr == 2e-3 for t in spec.trials)
    assert {t.config.optim.weight_decay for t in spec.trials} == {0.5, 1.0}  # the grid still varies its key
    assert SMALL["set"] == {"train.epochs": 20, "train.checkpoint_every": 10}  # the caller's spec is left alone
    assert [t.config for t in load_spec(spec.raw).trials] == [t.config for t in spec.trials]  # sweep.json rebuilds it


@pytest.mark.parametrize("change, key", [
    ({"gird": {}}, "gird"),
    ({"grid": {"task.frac_train": 0.4}}, "grid.task.frac_train"),
    ({"grid": {"optim.lr": [-1.0]}}, "optim.lr"),
    ({"grid": {"optim.nope": [1]}}, "optim.nope"),
    ({"seeds": "5-2"}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"random": {"n": 0, "fields": {}}}, "random.n"),
    ({"random": {"n": 2, "fields": {"optim.lr": {"normal": [0, 1]}}}}, "random.fields.optim.lr"),
    ({"random": {"n": 2, "fields": {"optim.lr": {"log_uniform": [0, 1]}}}}, "random.fields.optim.lr"),
    ({"analyze": "yes"}, "analyze"),
])
def test_bad_specs_name_the_key(change, key):
    with pytest.raises(ConfigError) as err:
        load_spec({**SMALL, **change})
    assert err.value.key == key


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("0,5") == [0, 5] and parse_seeds(7) == [7]
    for bad in ("", "a-b", -1, True, [0.5]):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "checkpoints").iterdir())}


def test_local_sweep_index_report_and_rerun(tmp_path):
    out = tmp_path / "sweep"
    result = run_sweep(SMALL, out, workers=2, progress=False)
    assert result == {f"t{i:04d}": "done" for i in range(8)}
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["swept"] == ["task.frac_train", "optim.weight_decay", "train.seed"] and len(doc["trials"]) == 8
    index = index_runs(out)
    assert sorted(index["path"]) == [f"t{i:04d}" for i in range(8)]
    assert sorted(set(zip(index["task.frac_train"], index["optim.weight_decay"]))) == [(0.4, 0.5), (0.4, 1.0), (0.6, 0.5), (0.6, 1.0)]
    assert (index["last_step"] == 20).all()
    hit = query_runs(out, '"optim.weight_decay" >= 1 AND "train.seed" = 1')
    assert sorted(hit["path"]) == ["t0003", "t0007"]
    before = {t: _mtimes(out / t) for t in result}
    assert run_sweep(SMALL, out, workers=2, progress=False) == result  # nothing to do
    assert {t: _mtimes(out / t) for t in result} == before

    from grokscope.report import write_report

    html = write_report([out]).read_text()
    for anchor in ("phase_diagram", "grokking_steps", "metric_vs_field", "key_frequencies", "trials"):
        assert f'id="{anchor}"' in html
    assert "no trial reached 0.99 test accuracy" in html and "t0007" in html
    with pytest.raises(Exception, match="holds another sweep"):
        run_sweep({**SMALL, "seeds": "0-2"}, out, progress=False)
    with pytest.raises(Exception, match="another base config"):
        run_sweep({**SMALL, "set": {**SMALL["set"], "train.epochs": 30}}, out, progress=False)


def test_analyze_true_indexes_each_trials_analysis(tmp_path):
    out = tmp_path / "sweep"
    run_sweep({**SMALL, "grid": {"optim.weight_decay": [0.5, 1.0]}, "seeds": 0, "analyze": True}, out, workers=1,
              progress=False)
    assert (out / "t0000" / "analysis" / "fourier" / "summary.json").is_file()
    index = index_runs(out)
    assert index["key_frequencies"].notna().all()  # JSON lists, e.g. "[]" for these unlearnt runs
    assert all(isinstance(json.loads(k), list) for k in index["key_frequencies"])


def test_groups_train_as_stacked_ensembles(tmp_path):
    out = tmp_path / "sweep"
    run_sweep(SMALL, out, workers=1, group=4, progress=False)
    sizes = [json.loads((out / f"t{i:04d}" / "config.json").read_text())["meta"]["ensemble_size"] for i in range(8)]
    assert sizes == [4] * 8  # wd and seed are member keys; frac_train changes the data: two groups of four


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA for the failing trial")
def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, capsys):
    spec = {**SMALL, "grid": {"train.device": ["cpu", "cuda"]}, "seeds": 0}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert "1 of 2 trials done" in printed and "failed: t0001" in printed
    assert "CUDA is not available" in (tmp_path / "s" / "failures" / "t0001.txt").read_text()
    assert trial_status(tmp_path / "s" / "t0000", load_spec(spec).trials[0].config) == "done"


def test_kill_midway_then_rerun_finishes_without_redoing_finished_trials(tmp_path):
    spec = {**SMALL, "set": {"train.epochs": 300, "train.checkpoint_every": 20}, "seeds": 0}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "grokscope.cli", "sweep", str(path), "--out", str(out), "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the reference below runs in a fresh process with the same
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cfgs = {t.id: t.config for t in load_spec(spec).trials}
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if trial_status(out / "t0000", cfgs["t0000"]) == "done" and (out / "t0001" / "state").is_dir():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = {t: trial_status(out / t, c) for t, c in cfgs.items()}
    assert status["t0000"] == "done" and status["t0003"] == "new"  # really cut short
    before = _mtimes(out / "t0000")
    assert subprocess.run(cmd, capture_output=True, env=env).returncode == 0
    assert all(trial_status(out / t, c) == "done" for t, c in cfgs.items())
    assert _mtimes(out / "t0000") == before  # the finished trial was not redone
    ref = tmp_path / "ref"
    subprocess.run([*cmd[:-4], "--out", str(ref), "--workers", "1"], check=True, capture_output=True, env=env)
    for t in cfgs:  # resumed trials equal uninterrupted ones
        a, b = pd.read_parquet(out / t / "metrics.parquet"), pd.read_parquet(ref / t / "metrics.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_ray_backend(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        out = tmp_path / "ray"
        assert run_sweep(SMALL, out, backend="ray", progress=False) == {f"t{i:04d}": "done" for i in range(8)}
        local = tmp_path / "local"
        run_sweep(SMALL, local, workers=1, progress=False)
        for i in range(8):  # the same trials, bit for bit
            t = f"t{i:04d}"
            pd.testing.assert_frame_equal(pd.read_parquet(out / t / "metrics.parquet"), pd.read_parquet(local / t / "metrics.parquet"))
    finally:
        ray.shutdown()


def test_outcomes_and_phase_diagram_on_a_planted_index():
    from grokscope.report import sweep_figures as S

    assert S.outcome(None, 100) == "never groks" and S.outcome(150, 100) == "generalises at once"
    assert S.outcome(5000, 100) == "groks"
    assert S.outcome(500, None) == "generalises at once"  # generalised before (or without) memorising
    index = pd.DataFrame({"a": [1, 1, 2, 2], "b": [0.1, 0.1, 0.1, 0.1], "train.seed": [0, 1, 0, 1],
                          "grokking_step": [None, 400.0, 900.0, 1100.0], "memorization_step": [100, 100, 100, 100],
                          "final_test_acc": [0.3, 1.0, 1.0, 1.0], "key_frequencies": [None, "[1, 2]", "[1, 2]", "[1, 3]"]})
    fig = S.phase_diagram(index, ["a", "b", "train.seed"])
    assert np.allclose(np.asarray(fig.data[0].z, dtype=float), [[0.5, 1.0]])
    assert fig.data[0].text[0][1].startswith("1000<br>groks")
    agree = S.key_frequency_agreement(index, ["a", "train.seed"])
    assert list(agree.data[0].y) == [pytest.approx(1 / 3)]  # only a=2 has two analysed seeds: {1,2} vs {1,3}


def test_runs_cli(tmp_path, capsys):
    out = tmp_path / "sweep"
    run_sweep({**SMALL, "seeds": 0}, out, workers=1, progress=False)
    assert main(["runs", str(out), "--where", '"task.frac_train" > 0.5']) == 0
    printed = capsys.readouterr().out
    assert "t0002" in printed and "t0003" in printed and "t0000" not in printed
    assert main(["runs", str(out), "--where", "nonsense ==="]) == 2
    assert main(["runs", str(out), "--columns", "path,nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--where" in err and "--columns" in err
