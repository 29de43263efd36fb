"""analyze on a run directory: files, formats, and the DESIGN summary keys."""

import json

import numpy as np
import pandas as pd
import pytest

from grokscope.analysis import analyze, load_analysis
from grokscope.runstore import RunStore
from grokscope.tasks import make_task
from planted import planted_config, planted_params, random_params

FREQS = [2, 5, 9]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Checkpoints that blend a random model into the planted one; the last one is the planted model."""
    path = tmp_path_factory.mktemp("run")
    cfg = planted_config("add", 23, FREQS)
    task = make_task(cfg.task)
    store = RunStore(path)
    store.write_config(cfg.to_dict(), {"grokscope": "test"})
    store.write_split(task.split_dict())
    planted, rnd = planted_params("add", 23, FREQS), random_params(cfg, 0)
    for i, step in enumerate([0, 100, 200, 300]):
        t = i / 3
        store.save_checkpoint(step, {k: (1 - t) * rnd[k] + t * planted[k] for k in planted})
    steps = np.arange(0, 301, 10)
    store.save_metrics([{"step": int(s), "epoch": int(s), "train_loss": float(10 ** (-4 * min(s / 100, 1))), "train_acc": min(1.0, s / 100),
                         "test_loss": float(10 ** (1 - 4 * np.clip((s - 150) / 100, 0, 1))),
                         "test_acc": float(s >= 250), "lr": 1e-3} for s in steps])
    summary = analyze(path).summary
    return path, summary


def test_files_written(run_dir):
    path, summary = run_dir
    a = path / "analysis"
    for name in ("summary.json", "progress.parquet"):  # the run level
        assert (a / name).is_file(), name
    for name in ("summary.json", "progress.parquet", "embed_fourier.parquet", "circles.parquet", "final.safetensors"):
        assert (a / "fourier" / name).is_file(), name
    assert not list(a.glob("**/.*.tmp"))
    assert summary["analyses"] == ["fourier", "numerics"]
    on_disk = json.loads((a / "summary.json").read_text())  # strict JSON (no NaN)
    assert on_disk == summary


def test_summary_has_design_keys(run_dir):
    _, s = run_dir
    for key in ("task", "final_step", "grokking_step", "key_frequencies", "neuron_clusters",
                "frac_neurons_single_frequency", "logit_fit_variance_explained", "phases", "final", "structure"):
        assert key in s, key
    assert set(s["phases"]) == {"memorization_end", "circuit_formation_end", "generalization_end", "cleanup_end"}
    assert set(s["grokking_times"]) == {"0.5", "0.9", "0.99"} and s["grokked"] == (s["grokking_step"] is not None)
    assert s["grokking_times"]["0.99"]["first"] == s["grokking_step"]
    for key in ("train_loss", "test_loss", "restricted_loss_train", "restricted_loss_test", "excluded_loss_train"):
        assert isinstance(s["final"][key], float)
    assert s["final_step"] == 300 and s["key_frequencies"] == FREQS and s["structure"] == "fourier"
    assert s["grokking_step"] == 250
    assert s["phases"]["memorization_end"] in (100, 110) and s["train_acc_99_step"] == 100  # the train loss is flat from 100
    assert s["task"]["op"] == "add" and s["task"]["p"] == 23
    assert "unclustered" in s["neuron_clusters"]


def test_progress_format(run_dir):
    path, _ = run_dir
    df = pd.read_parquet(path / "analysis" / "progress.parquet")
    assert df["step"].tolist() == [0, 100, 200, 300]
    needed = ["step", "train_loss", "test_loss", "train_acc", "test_acc", "restricted_loss_train",
              "restricted_loss_test", "excluded_loss_train", "gini_W_E", "gini_W_L",
              "frac_neurons_single_frequency", "attn_periodicity", "sq_norm_total"]
    needed += [f"excluded_loss_train_k{k}" for k in FREQS]
    needed += ["sq_norm_embed.W_E", "sq_norm_blocks.0.mlp.W_in", "sq_norm_unembed.W_U"]
    for c in needed:
        assert c in df.columns, c
    # the measures move from the random model to the planted one
    assert df["frac_neurons_single_frequency"].iloc[-1] == 1.0
    assert df["gini_W_E"].iloc[-1] > df["gini_W_E"].iloc[0]
    assert df["restricted_loss_train"].iloc[-1] < df["restricted_loss_train"].iloc[0]
    sq = df[[c for c in df.columns if c.startswith("sq_norm_") and c != "sq_norm_total"]].sum(axis=1)
    assert np.allclose(sq, df["sq_norm_total"])


def test_long_tables_and_final_tensors(run_dir):
    path, _ = run_dir
    out = load_analysis(path, "fourier")
    emb, circ, fin = out.tables["embed_fourier"], out.tables["circles"], out.tensors
    assert list(emb.columns) == ["step", "freq", "norm"] and len(emb) == 4 * 12
    assert list(circ.columns) == ["step", "freq", "token", "cos", "sin"] and len(circ) == 4 * 3 * 23
    assert fin["logits_fourier_norm"].shape == (23, 23)
    assert fin["neuron_freq_frac"].shape == (108, 12)
    assert fin["neuron_acts"].shape[1:] == (23, 23)
    assert fin["neuron_acts"].shape[0] == fin["neuron_acts_index"].shape[0] >= 3
    assert fin["attn_pattern"].shape == (2, 23, 23)
    assert fin["W_L_fourier_norm"].shape == (12,)
    assert fin["W_L_cluster_fourier_norm"].shape == (3, 12)
    assert fin["key_frequencies"].tolist() == FREQS
    # the logits' 2D Fourier norm sits on the (cos k, cos k) ... (sin k, sin k) cells of the key frequencies
    L = fin["logits_fourier_norm"].double()
    key_rows = [r for k in FREQS for r in (2 * k - 1, 2 * k)]
    share = float(L[key_rows][:, key_rows].pow(2).sum() / L.pow(2).sum())
    assert share > 0.99


def test_progress_measures_api(run_dir):
    path, _ = run_dir
    df = analyze(path, max_checkpoints=2, out_dir=path / "tmp-analysis").progress
    assert df["step"].tolist() == [0, 300]
    assert load_analysis(path).summary["n_checkpoints"] == 4  # out_dir left RUN/analysis/ alone


def test_cli_analyze_options_and_bad_input(run_dir, tmp_path, capsys):
    import shutil

    from grokscope.cli import main

    path = tmp_path / "copy"
    shutil.copytree(run_dir[0], path)
    assert main(["analyze", str(path), "--max-checkpoints", "2", "--threshold", "0.9"]) == 0
    assert "2 checkpoints analysed" in capsys.readouterr().out
    summary = json.loads((path / "analysis" / "summary.json").read_text())
    assert summary["n_checkpoints"] == 2 and summary["threshold"] == 0.9
    assert pd.read_parquet(path / "analysis" / "progress.parquet")["step"].tolist() == [0, 300]
    for bad, field in ((["--max-checkpoints", "0"], "--max-checkpoints"), (["--threshold", "1.5"], "--threshold")):
        assert main(["analyze", str(path), *bad]) == 2
        err = capsys.readouterr().err
        assert field in err and err.count("\n") == 1


def test_concurrent_checkpoints_give_the_same_table(run_dir):
    seen = []
    one = analyze(run_dir[0], threads=1).progress
    two = analyze(run_dir[0], threads=2, progress=lambda done, total: seen.append((done, total))).progress
    assert seen == [(i, 4) for i in range(1, 5)]
    assert one["step"].tolist() == [0, 100, 200, 300]
    pd.testing.assert_frame_equal(one, two)
