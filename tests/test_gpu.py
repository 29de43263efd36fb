"""The CUDA path end to end (issue 17): both engines, an ensemble, analysis, report and an exact resume.

Marked `gpu`; skipped, with the reason, where CUDA is absent (CI never has it). On a machine with a
GPU: `python -m pytest -m gpu tests/test_gpu.py`.
"""

from __future__ import annotations

import pytest
import torch

import grokscope

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]


def cuda(**overrides):
    return grokscope.get_preset("tiny").replace(**{"train.device": "cuda", "train.epochs": 60, **overrides})


@pytest.mark.parametrize("engine", ["fast", "generic"])
def test_both_engines_train_on_cuda_and_match_cpu(engine, tmp_path):
    gpu = grokscope.load_run(grokscope.train(cuda(**{"train.engine": engine}), tmp_path / "gpu"))
    cpu = grokscope.load_run(grokscope.train(cuda(**{"train.engine": engine, "train.device": "cpu"}), tmp_path / "cpu"))
    assert gpu.meta["device"].startswith("cuda") and gpu.meta["engine"] == engine
    assert "cuda_device" in gpu.meta["numerics"]
    # the same mathematics on another device: equal up to float rounding over 60 steps
    assert abs(gpu.metrics.train_loss.iloc[-1] - cpu.metrics.train_loss.iloc[-1]) <= 1e-3 * cpu.metrics.train_loss.iloc[-1] + 1e-6


def test_an_ensemble_analysis_and_report_on_cuda(tmp_path):
    cfgs = [cuda(**{"train.seed": s}) for s in range(4)]
    paths = grokscope.train_ensemble(cfgs, [tmp_path / f"s{s}" for s in range(4)])
    for p in paths:
        result = grokscope.analyze(p)
        assert result.summary["n_checkpoints"] > 0
    assert grokscope.report(paths, out=tmp_path / "cmp.html").is_file()


def test_a_killed_cuda_run_resumes_to_the_same_numbers(tmp_path):
    full = grokscope.train(cuda(), tmp_path / "full")
    part = grokscope.train(cuda(**{"train.epochs": 30}), tmp_path / "part")
    # continue the 30-epoch run to 60 by resuming it under the longer config's schedule
    import json

    cfg_file = part / "config.json"
    data = json.loads(cfg_file.read_text())
    data["config"]["train"]["epochs"] = 60
    cfg_file.write_text(json.dumps(data))
    grokscope.train(cuda(), part, resume=True)
    a, b = grokscope.load_run(full).metrics, grokscope.load_run(part).metrics
    assert len(a) == len(b)
    assert (abs(a.train_loss - b.train_loss) <= 1e-5 * a.train_loss.abs() + 1e-7).all()


def test_deterministic_mode_gives_the_same_bits_twice_on_cuda(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    for name in ("a", "b"):  # fresh processes: deterministic mode is process-wide
        subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--preset", "tiny", "--out", str(tmp_path / name),
                        "--set", "train.device=cuda", "--set", "train.deterministic=true", "--set", "train.epochs=60",
                        "--set", "train.progress=false"], check=True, capture_output=True, timeout=600)
    a, b = (pd.read_parquet(tmp_path / n / "metrics.parquet") for n in "ab")
    assert a[["train_loss", "test_loss"]].equals(b[["train_loss", "test_loss"]])
