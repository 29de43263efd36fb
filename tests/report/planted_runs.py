"""Planted runs for the report tests: real run-directory layout, synthetic analysis files.

Planted runs exist because the tiny run memorises but does not grok in test time, so it has no key
frequencies and no circles. A planted run has the directory layout and analysis formats of a real
one (docs/analysis.md), with a known Fourier structure (keys 3 and 7 of p = 23) that forms midway,
and can be made canonical-sized (p = 113, ~420 checkpoints) to measure report size and time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

import grokscope
from grokscope.io import atomic_write_parquet
from grokscope.runstore import RunStore
from grokscope.tasks.modular import ModularTask


def _checkpoint_steps(epochs: int, every: int) -> list[int]:
    early = [0] + [2**i for i in range(int(np.log2(every)) + 1)]
    return sorted(set(early) | set(range(every, epochs + 1, every)))


def plant_run(out: Path, name: str = "planted", p: int = 23, keys: tuple[int, ...] = (3, 7), epochs: int = 2000,
              checkpoint_every: int = 100, eval_every: int = 10, d_mlp: int = 64, n_heads: int = 2,
              analysis: bool = True, seed: int = 0) -> Path:
    """Write a run directory with synthetic metrics and (optionally) analysis files; returns its path."""
    rng = np.random.default_rng(seed)
    cfg = grokscope.get_preset("tiny").replace(**{
        "name": name, "task.p": p, "model.d_mlp": d_mlp, "model.n_heads": n_heads, "train.epochs": epochs,
        "train.checkpoint_every": checkpoint_every, "train.seed": seed})
    store = RunStore(out)
    store.path.mkdir(parents=True, exist_ok=True)
    store.write_config(cfg.to_dict(), {"grokscope_version": grokscope.__version__, "planted": True})
    store.write_split(ModularTask.from_config(cfg.task).split_dict())

    # curves: memorise by 10% of training, grok at 50%, clean-up done at 70%
    def sig(t, c, w):
        return 1 / (1 + np.exp(-(t - c) / w))

    step = np.arange(0, epochs + 1, eval_every)
    mem, grok = 0.1 * epochs, 0.5 * epochs
    train_loss = 3.2 * (1 - sig(step, mem / 2, mem / 8)) + 1e-3 + 0.01 * rng.random(len(step))
    test_loss = 3.2 + 8 * sig(step, mem / 2, mem / 8) - 11 * sig(step, grok, epochs / 25) + 1e-3
    metrics = pd.DataFrame({
        "step": step, "epoch": step, "train_loss": train_loss, "train_acc": sig(step, mem / 2, mem / 10),
        "test_loss": np.clip(test_loss, 1e-3, None), "test_acc": 0.02 + 0.98 * sig(step, grok, epochs / 40),
        "lr": 3e-3})
    atomic_write_parquet(store.metrics_path, metrics)
    if not analysis:
        return store.path

    steps = np.array(_checkpoint_steps(epochs, checkpoint_every))
    form = sig(steps, 0.4 * epochs, epochs / 20)  # 0 -> 1 as the circuit forms
    n_freqs = p // 2
    prog = pd.DataFrame({"step": steps})
    m = metrics.set_index("step")
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        prog[col] = m[col].reindex(steps, method="nearest").to_numpy()
    prog["restricted_loss_train"] = 3.2 - 3.1 * form
    prog["restricted_loss_test"] = 3.2 - 3.1 * form
    prog["excluded_loss_train"] = prog["train_loss"] + 6 * form
    for k in keys:
        prog[f"excluded_loss_train_k{k}"] = prog["train_loss"] + 3 * form
    prog["gini_W_E"] = 0.1 + 0.7 * form
    prog["gini_W_L"] = 0.1 + 0.8 * form
    prog["frac_neurons_single_frequency"] = 0.9 * form
    prog["attn_periodicity"] = 0.5 * form
    prog["sq_norm_total"] = 300 + 300 * sig(steps, mem, mem / 4) - 400 * form
    for name_ in ("embed.W_E", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U"):
        prog[f"sq_norm_{name_}"] = prog["sq_norm_total"] / 4

    emb = []
    for s, f in zip(steps, form):
        norm = 1.5 - 1.2 * f + 0.1 * rng.random(n_freqs + 1)
        norm[list(keys)] += 4 * f
        emb.append(pd.DataFrame({"step": s, "freq": np.arange(n_freqs + 1), "norm": norm}))
    tok = np.arange(p)
    circ = []
    for s, f in zip(steps, form):
        for k in keys:
            ang = 2 * np.pi * k * tok / p
            noise = rng.normal(size=(p, 2))
            circ.append(pd.DataFrame({"step": s, "freq": k, "token": tok,
                                      "cos": f * np.cos(ang) + (1 - f) * noise[:, 0],
                                      "sin": f * np.sin(ang) + (1 - f) * noise[:, 1]}))
    top = store.path / "analysis"
    adir = top / "fourier"  # the layout `grokscope analyze` writes (analysis/fourier/ + the run level)
    adir.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(adir / "progress.parquet", prog)
    atomic_write_parquet(top / "progress.parquet", prog)
    atomic_write_parquet(adir / "embed_fourier.parquet", pd.concat(emb, ignore_index=True))
    atomic_write_parquet(adir / "circles.parquet", pd.concat(circ, ignore_index=True) if circ else
                         pd.DataFrame({c: pd.Series(dtype="float64" if c in ("cos", "sin") else "int64")
                                       for c in ("step", "freq", "token", "cos", "sin")}))

    share = rng.dirichlet(np.ones(n_freqs + 1), size=d_mlp)
    cluster = np.zeros(d_mlp, dtype=np.int64)
    for j in range(d_mlp):
        if keys and j % 4:  # three in four neurons cluster on a key frequency
            k = keys[j % len(keys)]
            share[j] *= 0.05
            share[j, k] += 0.95
            cluster[j] = k
    wave = keys or (1,)  # frequencies drawn into the activations and attention
    x = np.arange(p)[:, None]
    y = np.arange(p)[None, :]
    n_show = 8
    acts = np.stack([np.maximum(0, np.cos(2 * np.pi * wave[i % len(wave)] * (x + y) / p + i)) for i in range(n_show)])
    logit_norm = rng.random((p, p)) * 0.1
    for k in keys:
        logit_norm[2 * k - 1, 2 * k - 1] = logit_norm[2 * k, 2 * k] = 5.0
    attn = np.stack([0.5 + 0.4 * np.cos(2 * np.pi * wave[h % len(wave)] * (x - y) / p) for h in range(n_heads)])
    tensors = {
        "logits_fourier_norm": logit_norm, "neuron_freq_frac": share, "neuron_acts": acts,
        "neuron_acts_index": np.arange(n_show), "neuron_cluster": cluster, "attn_pattern": attn,
        "group_tokens": np.arange(p), "key_frequencies": np.array(keys, dtype=np.int64),
    }
    save_file({k: torch.as_tensor(np.ascontiguousarray(v)).float() if np.asarray(v).dtype.kind == "f"
               else torch.as_tensor(np.ascontiguousarray(v)).long() for k, v in tensors.items()},
              str(adir / "final.safetensors"))
    counts = {str(k): int((cluster == k).sum()) for k in keys}
    counts["unclustered"] = int((cluster == 0).sum())
    summary = {
        "format": "grokscope.analysis.fourier.v1", "task": cfg.to_dict()["task"],
        "group": {"kind": "Z_p", "n": p, "generator": None, "sign": 1, "expression": "x + y", "n_freqs": n_freqs},
        "final_step": int(steps[-1]), "grokking_step": int(step[np.argmax(metrics.test_acc >= 0.99)]),
        "key_frequencies": list(keys), "structure": "fourier" if keys else "none", "neuron_clusters": counts,
        "frac_neurons_single_frequency": 0.75, "logit_fit_variance_explained": 0.93,
        "phases": {"memorization_end": int(mem), "circuit_formation_end": int(0.45 * epochs),
                   "cleanup_end": int(0.6 * epochs)},
        "final": {"train_loss": float(prog.train_loss.iloc[-1]), "test_loss": float(prog.test_loss.iloc[-1]),
                  "restricted_loss_train": 0.1, "restricted_loss_test": 0.1, "excluded_loss_train": 6.0},
    }
    (adir / "summary.json").write_text(json.dumps(summary))
    run_level = {**summary, "format": "grokscope.analysis.v2", "analyses": ["fourier"], "n_checkpoints": len(steps)}
    (top / "summary.json").write_text(json.dumps(run_level))
    return store.path


