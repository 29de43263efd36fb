"""The crossover search: the bisection on a planted outcome, then real trials through the CLI."""

import json
from pathlib import Path

import pytest

import grokscope
from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.sweeps import crossover as X


def _planted(monkeypatch, threshold):
    """Trials generalise exactly when the size reaches `threshold`; records the sizes tried."""
    tried = []

    def fake(cfg, path, search):
        v = getattr(cfg.task, search.field.split(".")[1])
        tried.append(v)
        ok = v >= threshold
        return {"value": v, "path": path.name, "n_train": 0, "generalised": ok, "memorization_step": 10,
                "generalization_step": 100 if ok else None, "last_step": 100 if ok else 1000,
                "outcome": "groks" if ok else "never groks", "final_test_acc": 1.0 if ok else 0.1}

    monkeypatch.setattr(X, "run_trial", fake)
    return tried


def test_bisection_brackets_a_planted_crossover(monkeypatch, tmp_path):
    tried = _planted(monkeypatch, threshold=700)
    cfg = grokscope.get_preset("digit_add5_finite")
    doc = X.crossover(cfg, tmp_path / "x", "task.n_train", 100, 3000, max_trials=12, rel_tol=0.05)
    r = doc["crossover"]
    assert r["status"] == "bracketed" and r["below"] < 700 <= r["above"] and r["above"] / r["below"] <= 1.05
    assert tried[:3] == [100, 3000, 548]  # lo, hi, then the geometric midpoint round(sqrt(100 * 3000))
    assert all(isinstance(v, int) for v in tried)
    saved = json.loads((tmp_path / "x" / "crossover.json").read_text())
    assert saved["crossover"] == r and len(saved["trials"]) == len(tried)


def test_budget_and_the_ends(monkeypatch, tmp_path):
    cfg = grokscope.get_preset("quick")
    _planted(monkeypatch, threshold=0.41)
    r = X.crossover(cfg, tmp_path / "a", "task.frac_train", 0.1, 0.9, max_trials=3)["crossover"]
    assert r["trials"] == 3 and r["status"].startswith("budget spent")
    r = X.crossover(cfg, tmp_path / "b", "task.frac_train", 0.5, 0.9)["crossover"]
    assert r["trials"] == 1 and r["status"].startswith("every trial generalised") and r["above"] == 0.5
    r = X.crossover(cfg, tmp_path / "c", "task.frac_train", 0.1, 0.3)["crossover"]
    assert r["trials"] == 2 and r["status"].startswith("no trial generalised") and r["below"] == 0.3


@pytest.mark.parametrize("kw,field", [
    (dict(field="task.p"), "--field"), (dict(lo=0.5, hi=0.2), "--lo/--hi"), (dict(max_trials=1), "--max-trials"),
    (dict(target=1.5), "--target"), (dict(field="task.n_train", lo=1, hi=10), "--field"),
])
def test_bad_searches_name_the_option(kw, field):
    args = dict(field="task.frac_train", lo=0.2, hi=0.8) | kw
    with pytest.raises(ConfigError) as err:
        X.Search(**args).check(grokscope.get_preset("tiny"))
    assert err.value.key == field


def test_cli_runs_real_trials_writes_a_report_and_reuses_them(tmp_path, capsys):
    out = tmp_path / "x"
    argv = ["crossover", "--preset", "tiny", "--set", "train.epochs=120", "--field", "task.frac_train",
            "--lo", "0.3", "--hi", "0.6", "--max-trials", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "largest size that did not generalise 0.6" in printed  # p = 23 memorises and does not generalise
    doc = X.load_crossover(out)
    assert [t["path"] for t in doc["trials"]] == ["frac_train=0.3", "frac_train=0.6"]
    run = grokscope.load_run(out / "frac_train=0.3")
    assert run.config.task.frac_train == 0.3 and run.config.train.stop_at_test_acc == 0.99
    assert doc["trials"][1]["n_train"] == round(0.6 * 23 * 23)
    assert "Crossover search over task.frac_train" in (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and "Crossover search" in (out / "report.html").read_text()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(argv) == 0  # the same search again: the finished trials are read, not retrained
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == before
    capsys.readouterr()
    assert main([*argv[:-1], str(out), "--rel-tol", "0.2"]) == 2  # another search into the same folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another crossover search" in err


def test_a_step_budget_gives_every_size_the_same_steps():
    cfg = grokscope.get_preset("digit_add5_finite").replace(**{"train.batch_size": 256})
    search = X.Search("task.n_train", 300, 3000, steps=1000)
    for n in (300, 1000, 3000):
        steps = search.config(cfg, n).total_steps()
        assert 1000 <= steps < 1000 + -(-n // 256)  # whole epochs: at most one epoch over the budget
