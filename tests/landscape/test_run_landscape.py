"""The landscape verbs on a real run: the Hessian of a parameter subset against its explicit matrix,
minibatch losses, the files written, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import grokscope
from grokscope.analysis.landscape import hessian
from grokscope.analysis.landscape.hessian import FlatLoss
from grokscope.cli import main


def test_rows_pick_each_members_examples(tiny_run):
    run = grokscope.load_run(tiny_run)
    f = run.loss_fn("train")
    p = run.stacked_params(run.steps[-2:])
    n = f.n_examples
    every = torch.arange(n).expand(2, n)
    assert torch.allclose(f(p, every), f(p), rtol=1e-10)
    first = f(p, torch.stack([torch.arange(5), torch.arange(5)]))
    alone = f({k: v[:1] for k, v in p.items()}, torch.arange(5)[None])
    # float32 forwards of one member and of two round differently on some CPUs (AMD EPYC: 1.5e-7)
    assert first[0] == pytest.approx(float(alone[0]), rel=1e-5) and not torch.allclose(first, f(p), rtol=1e-3)


def test_the_hessian_of_a_subset_matches_the_explicit_matrix(tiny_run):
    run = grokscope.load_run(tiny_run)
    c = hessian(run, params=["unembed.W_U"], k=5)
    f = FlatLoss(run.loss_fn("train"), run.params(), ["unembed.W_U"])
    H = torch.func.hessian(f.value)(f.x0).double()
    want = np.sort(np.linalg.eigvalsh(H.numpy()))[::-1][:5]
    assert c.dim == f.dim == H.shape[0] and c.eigenvalues == pytest.approx(want, rel=1e-4)
    assert c.loss == pytest.approx(float(run.metrics.iloc[-1]["train_loss"]), rel=1e-5)


def test_the_verbs_write_their_files_and_refuse_bad_input(tiny_run, capsys):
    run = str(tiny_run)
    assert main(["landscape", run, "--k", "3", "--params", "unembed.*", "--trace", "4"]) == 0
    out = capsys.readouterr().out
    assert "top 3 Hessian eigenvalues" in out and "trace (Hutchinson, 4 probes)" in out
    step = grokscope.load_run(run).steps[-1]
    doc = json.loads((tiny_run / "landscape" / f"hessian-train-step{step}.json").read_text())
    assert len(doc["eigenvalues"]) == 3 and doc["params"] == ["unembed.W_U"]
    assert main(["llc", run, "--draws", "10", "--burn-in", "5", "--chains", "2"]) == 0
    assert "LLC" in capsys.readouterr().out
    doc = json.loads((tiny_run / "landscape" / f"llc-train-step{step}.json").read_text())
    assert len(doc["per_chain"]) == 2 and doc["settings"]["draws"] == 10
    for argv, field in ((["landscape", run, "--params", "nope.*"], "params"), (["landscape", run, "--step", "7"], "step"),
                        (["llc", run, "--eps", "-1"], "eps"), (["llc", run, "--chains", "0"], "chains"),
                        (["llc", run, "--batch-size", "-3"], "--batch-size"), (["landscape", run, "--k", "0"], "k")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_report_shows_the_landscape_sections_once_computed(tmp_path):
    from grokscope.report import write_report

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 60, "train.progress": False})
    run = grokscope.train(cfg, tmp_path / "run")
    html = write_report(run).read_text()
    assert 'id="llc_progress"' not in html and 'id="hessian_progress"' not in html
    df = grokscope.landscape(run, checkpoints=2, k=2)
    assert list(df.columns) == ["step", "loss", "lambda_1", "lambda_2"] and len(df) == 2
    grokscope.llc(run, checkpoints=2, draws=5, burn_in=2, chains=2)
    steps = grokscope.load_run(run).steps
    con = grokscope.landscape(run, connect=(steps[0], steps[-1]), curve_steps=3)
    assert con.path["linear"].iloc[0] == pytest.approx(con.path["bezier"].iloc[0])
    grokscope.landscape(run, circuits=("1", "2"), grid=3, relax_steps=1, k_a=2)
    assert 'id="hessian_spectrum"' not in write_report(run).read_text()
    c = grokscope.landscape(run, k=3, density_vectors=1)
    html = write_report(run).read_text()
    assert all(f'id="{s}"' in html for s in ("hessian_progress", "llc_progress", "connections", "circuit_walks",
                                            "hessian_spectrum"))
    from grokscope.report.landscape_figures import hessian_spectrum

    fig = hessian_spectrum(run)  # the density curve, and the top-3 eigenvalues as ticks at their values
    assert len(fig.data) == 2 and list(fig.data[1].x) == pytest.approx(list(c.eigenvalues))


def test_the_circuit_walk_from_the_cli(tiny_run, capsys):
    run = str(tiny_run)
    assert main(["landscape", run, "--circuits", "3", "k5", "--grid", "5", "--relax-steps", "3", "--k-a", "2"]) == 0
    out = capsys.readouterr().out
    assert "keep k3, ablate k5" in out and "sloped canyon:" in out
    doc = json.loads((tiny_run / "landscape" / "circuits-k3-k5-train.json").read_text())
    assert doc["direction"]["k_a"] == 2 and set(doc["verdict"]) >= {"orthogonal_minimum", "sloped", "sloped_canyon"}
    import pandas as pd

    walk = pd.read_parquet(tiny_run / "landscape" / "circuits-k3-k5-train.parquet")
    assert len(walk) == 5 and walk["t"].iloc[2] == 0 and walk["moved"].iloc[2] < walk["moved"].max() + 1e-12
    # t = 0 is the checkpoint: its joint loss is the run's last train loss
    assert walk["joint"].iloc[2] == pytest.approx(float(grokscope.load_run(run).metrics.iloc[-1]["train_loss"]), rel=1e-5)
    for argv, field in ((["--circuits", "3"], "--circuits"), (["--circuits", "3", "99"], "--circuits"),
                        (["--circuits", "3", "5", "--grid", "4"], "--grid"), (["--circuits", "digit", "5"], "--circuits"),
                        (["--circuits", "3", "5", "--span", "-1"], "--span"), (["--circuits", "3", "3"], "--circuits")):
        assert main(["landscape", run, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_pca_slice_puts_the_trajectory_on_the_surface(tiny_run, capsys):
    assert main(["landscape", str(tiny_run), "--slice", "pca", "--grid", "5"]) == 0
    assert "the plane holds" in capsys.readouterr().out
    import pandas as pd

    tr = pd.read_parquet(tiny_run / "landscape" / "slice-pca-train-trajectory.parquet")
    run = grokscope.load_run(tiny_run)
    assert list(tr["step"]) == run.steps and tr.iloc[-1][["alpha", "beta"]].abs().max() < 1e-9
    assert tr.iloc[-1]["loss"] == pytest.approx(float(run.metrics.iloc[-1]["train_loss"]), rel=1e-5)
    assert len(pd.read_parquet(tiny_run / "landscape" / "slice-pca-train.parquet")) == 25
    assert main(["landscape", str(tiny_run), "--slice", "pca", "--grid", "1"]) == 2


def test_the_report_shows_train_test_and_3d_surfaces(tmp_path):
    from grokscope.report import write_report

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 40, "train.progress": False})
    run = grokscope.train(cfg, tmp_path / "run")
    grokscope.landscape(run, slice="pca", grid=3)
    html = write_report(run).read_text()
    assert 'id="loss_surface"' in html and 'id="loss_surface_3d"' in html and 'id="loss_surface_test"' not in html
    res = grokscope.landscape(run, slice="pca", grid=3, split="test")
    assert res["settings"]["split"] == "test"
    html = write_report(run).read_text()
    assert 'id="loss_surface_test"' in html and "Test loss in the plane" in html


def test_connecting_to_other_runs_keeps_one_file_each(tiny_run, tmp_path, capsys):
    import shutil

    others = [tmp_path / "seed 1", tmp_path / "seed2"]
    for o in others:
        shutil.copytree(tiny_run, o)
    run, step = str(tiny_run), grokscope.load_run(tiny_run).steps[-1]
    out = tmp_path / "out"
    for o in others:
        assert main(["landscape", run, "--connect", str(step), str(step), "--to", str(o), "--no-bezier",
                     "--out", str(out)]) == 0
    names = sorted(f.name for f in out.glob("connect-*.json"))
    assert names == [f"connect-train-{step}-seed2-{step}.json", f"connect-train-{step}-seed_1-{step}.json"]
    assert f"written to {out / names[0]}" in capsys.readouterr().out
    doc = json.loads((out / names[0]).read_text())  # the same weights: no barrier at all
    assert doc["settings"]["run_b"].endswith("seed2") and abs(doc["linear_barrier"]) < 1e-6
