"""The benchmark scripts still run (tiny settings; their numbers are not checked here)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_time_to_grok_runs(tmp_path):
    out = run("time_to_grok.py", "--preset", "tiny", "--set", "train.epochs=60", "--keep", str(tmp_path / "run"))
    assert "tiny:" in out and "machine: " in out and ("first at epoch" in out or "not reached in 60 epochs" in out)
    assert (tmp_path / "run" / "metrics.parquet").exists()


def test_train_speed_runs():
    out = run("train_speed.py", "--epochs", "10", "--warmup", "1", "--ens-epochs", "10", "--members", "1,2",
              "--skip-trainer", "--threads", "1", "--profile", "3")
    assert "speed-up fast / plain" in out and "fast ensemble" in out
    assert out.startswith("machine: ") and "capability" in out
    assert "per-op profile, 3 steps" in out and "largest single op" in out


def test_step_time_and_analyze_speed_run(tmp_path):
    import grokscope

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 20, "train.progress": False})
    path = grokscope.train(cfg, tmp_path / "run")
    for flag in ([], ["--no-ftz"]):
        out = run("step_time.py", str(path), "--steps", "2", "--warmup", "1", "--profile", "2", *flag)
        assert "per training step" in out and f"denormals flushed {not flag}" in out
        assert "machine: " in out and "aten::" in out
    out = run("analyze_speed.py", str(path), "--checkpoints", "2", "--repeat", "1")
    assert "2 checkpoints analysed" in out and "median" in out and "machine: " in out
    assert not (path / "analysis").exists()  # the benchmark analyses a copy


def test_sweep_speed_runs():
    out = run("sweep_speed.py", "--epochs", "5", "--workers", "1")
    assert "16 trials of 5 epochs" in out and "ratio local / sequential" in out and "machine: " in out


def test_reproducibility_runs():
    out = run("reproducibility.py", "--runs", "1", "--preset", "tiny", "--epochs", "5", "--parallel", "2",
              "--modes", "default", "deterministic")
    assert "machine: " in out and "default: distinct trajectories 1 of 1 processes" in out
    assert "deterministic: distinct trajectories 1 of 1 processes" in out and "deterministic / default median time" in out


def test_gpu_ensemble_smoke_runs_on_cpu():
    out = run("gpu_ensemble.py", "--device", "cpu", "--members", "2", "--epochs", "5")
    assert "machine: " in out and "of 2 members reached" in out and "member-epochs/s" in out


def test_task_speed_runs(tmp_path):
    out = run("task_speed.py", "--presets", "skip_trigram,s5", "--blocks", "1", "--block", "2", "--warmup", "1",
              "--json", str(tmp_path / "rows.json"))
    assert out.startswith("machine: ") and out.count("ratio grokscope / plain") == 2
    assert (tmp_path / "rows.json").exists()


def test_mlp_ensemble_runs():
    out = run("mlp_ensemble.py", "--steps", "20", "--members", "2", "--checkpoint-every", "10")
    assert "machine: " in out and "plain loop, 1 seed" in out and "grokscope ensemble, 2 seeds" in out and "ratio" in out


def test_landscape_speed_runs(tmp_path):
    import grokscope

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 20, "train.progress": False})
    path = grokscope.train(cfg, tmp_path / "run")
    out = run("landscape_speed.py", str(path), "--k", "2", "--chains", "2", "--curve-steps", "2", "--grid", "3",
              "--relax-steps", "1")
    assert "machine: " in out and "one full-split gradient" in out and "top-2 eigenvalues" in out
    assert "LLC, 2 chains" in out and "connect (line + Bezier)" in out and "gradients" in out
    assert "2D slice, 3x3" in out and "circuit walk" in out


def test_saliency_speed_runs(tmp_path):
    import grokscope

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 20, "train.progress": False})
    path = grokscope.train(cfg, tmp_path / "run")
    out = run("saliency_speed.py", str(path), "--checkpoints", "2", "--shapley", "1")
    assert "machine: " in out and "one full-split gradient" in out and "saliency, 2 checkpoints" in out and "gradients" in out


def test_llc_devinterp_names_its_optional_install():
    """devinterp is never a dependency: without it the cross-check says how to install it."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("devinterp") is not None:
        pytest.skip("devinterp is installed here; benchmarks/llc_devinterp.py runs for real")
    done = subprocess.run([sys.executable, str(BENCH / "llc_devinterp.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install --no-deps devinterp==1.3.2" in done.stderr
