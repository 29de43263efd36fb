"""Reproduce the seed texts' quantitative claims: run each experiment's grokscope commands, read our
number for every claim from the run directories, and write the table of docs/reproduction.md.

    python benchmarks/reproduce.py                       # every experiment at full size (~1.5 h on 2 cores)
    python benchmarks/reproduce.py --only canonical rand # some of them
    python benchmarks/reproduce.py --write-docs          # also record the numbers and rewrite the table
    python benchmarks/reproduce.py --small --out /tmp/r  # every command at a few epochs (what the tests run)

Experiments and claims are data (EXPERIMENTS, CLAIMS). A claim's `ours` reads the files the commands
wrote and returns a short text; it never sees the seed's number. The measured texts go to
benchmarks/results/reproduction.json with the date and the machine, and the docs table is rendered
from that file, so no number in it is typed by hand. Finished runs are kept: a second call re-reads
them (training resumes a killed run, and a finished one is left alone).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402

from grokscope.io import read_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reproduction.json"
DOC = ROOT / "docs" / "reproduction.md"
SMALL = ["--set", "train.epochs=8", "--set", "train.checkpoint_every=4"]  # --small: appended to train/sweep lines
IMG = ROOT / "docs" / "img" / "reproduction"
FIGURES = {"Loss and accuracy": "curves", "Progress measures": "progress", "Fourier norms of the embedding": "embed_final",
           "Neuron clusters": "neurons", "Fourier spectrum of the logits": "logits"}  # canonical report figure -> PNG
SPIKE = 10.0  # a loss spike: a logged train loss above SPIKE x the one logged before it


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    commands: tuple[str, ...]  # grokscope command lines; RUNS is the results folder
    cost: str  # wall time at full size on the 2-core CPU


EXPERIMENTS = {e.id: e for e in [
    Experiment("canonical", "The canonical run (seed 004)", (
        "grokscope train --preset nanda2023 --out RUNS/canonical",
        "grokscope analyze RUNS/canonical --max-checkpoints 250",
        "grokscope report RUNS/canonical"), "~15 min"),
    Experiment("seeds", "Three more seeds of the canonical config, 12k epochs", (
        "grokscope train --preset nanda2023 --set train.epochs=12000 --seeds 1-3 --out RUNS/seeds",
        "grokscope analyze RUNS/seeds"), "~15 min"),
    Experiment("rand", "The control: a random operation table", (
        "grokscope train --preset nanda2023 --set task.op=rand --set train.epochs=12000 --out RUNS/rand",
        "grokscope analyze RUNS/rand"), "~5 min"),
    Experiment("sub", "Modular subtraction", (
        "grokscope train --preset nanda2023 --set task.op=sub --set train.epochs=12000 --out RUNS/sub",
        "grokscope analyze RUNS/sub"), "~5 min"),
    Experiment("frac95", "95 % of the pairs in training", (
        "grokscope train --preset nanda2023 --set task.frac_train=0.95 --set train.epochs=3000 --out RUNS/frac95",), "~3 min"),
    Experiment("float32", "The loss in float32 (the slingshots)", (
        "grokscope train --preset nanda2023 --set train.loss_dtype=float32 --set train.epochs=12000 --out RUNS/float32",),
        "~5 min"),
    Experiment("split", "Random against symmetric split (the commutativity leak)", (
        "grokscope train --preset nanda2023 --set train.epochs=1500 --out RUNS/split-random",
        "grokscope train --preset nanda2023 --set task.split=symmetric --set train.epochs=1500 --out RUNS/split-symmetric"),
        "~1 min"),
    Experiment("lr", "Learning rate x10 or x100 from step 300 (x + y mod 31, the quick preset)", (
        "grokscope train --preset quick --out RUNS/lr-x1",
        "grokscope train --preset quick --set 'interventions=[{kind: lr_multiplier, at_step: 300, factor: 10}]' --out RUNS/lr-x10",
        "grokscope train --preset quick --set 'interventions=[{kind: lr_multiplier, at_step: 300, factor: 100}]' --out RUNS/lr-x100"),
        "~1 min"),
    Experiment("phase-diagram", "Training fraction x weight decay (x + y mod 31, 2 seeds each)", (
        "grokscope sweep examples/phase_diagram.yaml --out RUNS/phase-diagram",
        "grokscope report RUNS/phase-diagram"), "~15 min"),
]}


# -- reading the runs --------------------------------------------------------------------------


# Each file is read once per process: the readouts run after every experiment's commands, and many
# claims read the same run. The frames are shared, so a readout filters them and never mutates one.
@functools.lru_cache(maxsize=None)
def config(run: Path) -> dict:
    return read_json(run / "config.json")["config"]


@functools.lru_cache(maxsize=None)
def summary(run: Path) -> dict:
    return read_json(run / "analysis" / "summary.json")


@functools.lru_cache(maxsize=None)
def progress(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "analysis" / "progress.parquet")


@functools.lru_cache(maxsize=None)
def metrics(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "metrics.parquet")


def first(rows: pd.DataFrame) -> int | None:
    """The first step of some rows, or None when there are none."""
    return int(rows.step.iloc[0]) if len(rows) else None


def g(x: float | None, digits: int = 2) -> str:
    """A number as the table shows it: `digits` decimals, 3 significant digits below 0.1 and from 1e4 on, plain
    integers, – for none."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if x != 0 and (abs(x) < 0.1 or abs(x) >= 1e4):
        return f"{x:.{digits + 1}g}"
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def at(df: pd.DataFrame, step: int | None, col: str) -> float | None:
    """The value of `col` at the row nearest `step`."""
    if step is None or df.empty:
        return None
    return float(df.iloc[(df.step - step).abs().argmin()][col])


def members(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "config.json").is_file())


def spikes(run: Path, after: int | None) -> int:
    """Logged steps past `after` whose train loss is above SPIKE x the previous logged one."""
    m = metrics(run)
    m = m[m.step > (after or 0)]
    return int((m.train_loss.to_numpy()[1:] > SPIKE * m.train_loss.to_numpy()[:-1]).sum())


# -- the readouts, one per kind of claim -------------------------------------------------------


def canonical_config(r: Path) -> str:
    c = config(r / "canonical")
    t, m, o, tr = c["task"], c["model"], c["optim"], c["train"]
    return (f"x {'+' if t['op'] == 'add' else t['op']} y mod {t['p']}, {t['frac_train']:.0%} of pairs; {m['n_layers']}L, "
            f"d_model {m['d_model']}, {m['n_heads']}x{m['d_head']} heads, d_mlp {m['d_mlp']}, {m['act_fn']}, "
            f"LN {m['normalization']}; AdamW lr {o['lr']:g}, wd {o['weight_decay']:g}, "
            f"{'full batch' if tr['batch_size'] is None else tr['batch_size']}, {tr['epochs']} epochs")


def grokking(r: Path) -> str:
    s = summary(r / "canonical")
    times = s["grokking_times"]
    return (f"test acc 0.5 / 0.9 / 0.99 at {g(times['0.5']['first'])} / {g(times['0.9']['first'])} / "
            f"{g(times['0.99']['first'])}; train acc 0.99 at {g(s['train_acc_99_step'])}")


def phases(r: Path) -> str:
    p = summary(r / "canonical")["phases"]
    return ("memorisation ends " + g(p["memorization_end"]) + ", circuit formation " + g(p["circuit_formation_end"])
            + ", generalisation " + g(p["generalization_end"]) + ", clean-up " + g(p["cleanup_end"]))


def restricted_first(r: Path) -> str:
    ch = summary(r / "canonical")["phase_changes"]
    rl, tl = ch.get("restricted_loss") or {}, ch.get("test_loss") or {}
    return (f"restricted-loss change {g(rl.get('start'))}-{g(rl.get('end'))} (steepest {g(rl.get('steepest'))}); "
            f"test-loss change {g(tl.get('start'))}-{g(tl.get('end'))} (steepest {g(tl.get('steepest'))})")


def excluded_early(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    steps = [st for st in (100, 300, 1000, s["phases"]["memorization_end"]) if st is not None]
    return "train / excluded loss: " + "; ".join(
        f"{g(at(pr, st, 'train_loss'))} / {g(at(pr, st, 'excluded_loss_train'))} at {st}" for st in steps)


def excluded_diverges(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    ratio = pr.excluded_loss_train / pr.train_loss
    first10 = first(pr[(ratio > 10) & (pr.step > (s["phases"]["memorization_end"] or 0))])
    grok = s["grokking_step"]
    return (f"excluded loss > 10x train loss from step {g(first10)}; at the grokking step ({g(grok)}) it is "
            f"{g(at(pr, grok, 'excluded_loss_train'))} nats against train {g(at(pr, grok, 'train_loss'))}; final "
            f"{g(s['final']['excluded_loss_train'])}")


def restricted_train_test(r: Path) -> str:
    pr = progress(r / "canonical")
    diff = (pr.restricted_loss_train - pr.restricted_loss_test).abs()
    return (f"over {len(pr)} checkpoints the restricted train and test losses differ by at most {g(diff.max())} nats, "
            f"{g((diff / pr.restricted_loss_test).max())} of the test value")


def restricted_before_test(r: Path) -> str:
    pr = progress(r / "canonical")
    step = first(pr[pr.restricted_loss_test < 0.1])
    return (f"restricted test loss < 0.1 at step {g(step)}, when the test loss is {g(at(pr, step, 'test_loss'))}; "
            f"test loss < 0.1 at {g(first(pr[pr.test_loss < 0.1]))}")


def early_circuits(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    ph = s["phases"]
    steps = [("init", 0), ("memorisation's end", ph["memorization_end"]), ("circuit formation's end", ph["circuit_formation_end"])]
    return "restricted test loss / Gini of W_E: " + "; ".join(
        f"{g(at(pr, st, 'restricted_loss_test'))} / {g(at(pr, st, 'gini_W_E'))} at {name} ({g(st)})" for name, st in steps)


def key_frequencies(r: Path) -> str:
    s = summary(r / "canonical")
    return f"{len(s['key_frequencies'])} key frequencies {s['key_frequencies']} of {(s['task']['p'] - 1) // 2}"


def embedding_frequencies(r: Path) -> str:
    emb = pd.read_parquet(r / "canonical" / "analysis" / "fourier" / "embed_fourier.parquet")
    last = emb[(emb.step == emb.step.max()) & (emb.freq > 0)].sort_values("norm", ascending=False)
    big = last[last.norm > 0.1 * last.norm.max()]
    return f"embedding frequencies with > 10 % of the largest norm: {sorted(big.freq.astype(int).tolist())}"


def neuron_clusters(r: Path) -> str:
    s = summary(r / "canonical")
    return f"clusters {s['neuron_clusters']}; {g(100 * s['frac_neurons_single_frequency'], 1)} % of neurons single-frequency (>= 85 % of variance)"


def logit_fit(r: Path) -> str:
    s = summary(r / "canonical")
    return (f"variance explained {g(s['logit_fit_variance_explained'], 3)}; loss of the fit {g(s['logit_fit'].get('loss'))} "
            f"against the model's train loss {g(s['final']['train_loss'])}")


def w_l_share(r: Path) -> str:
    share = summary(r / "canonical").get("W_L_cluster_own_freq_share") or {}
    return "each cluster's W_L energy in its own frequency: " + (", ".join(f"k={k}: {g(v, 3)}" for k, v in share.items()) or "–")


def gini_over_training(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    start = (s["phase_changes"].get("test_loss") or {}).get("start")
    return (f"Gini of W_E's Fourier norms: {g(at(pr, 0, 'gini_W_E'))} at init, {g(at(pr, 7000, 'gini_W_E'))} at 7000, "
            f"{g(at(pr, start, 'gini_W_E'))} where the test-loss change starts ({g(start)}), {g(s['final']['gini_W_E'])} at the end")


def weight_norm(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    mem = s["phases"]["memorization_end"]
    peak = pr.loc[pr.sq_norm_total.idxmax()]
    return (f"sum of squared weights {g(at(pr, 0, 'sq_norm_total'), 0)} at init, peak {g(peak.sq_norm_total, 0)} at step "
            f"{int(peak.step)}, {g(at(pr, mem, 'sq_norm_total'), 0)} at memorisation's end, {g(s['final']['sq_norm_total'], 0)} final")


def weight_norm_fall(r: Path) -> str:
    pr, s = progress(r / "canonical"), summary(r / "canonical")
    x = pr[pr.step >= (s["phases"]["memorization_end"] or 0)]
    rate = -np.gradient(np.log(x.sq_norm_total.to_numpy()), x.step.to_numpy())
    steepest = int(x.step.iloc[int(np.argmax(rate))]) if len(x) > 2 else None
    return (f"steepest fall of log(sum of squared weights) after memorisation at step {g(steepest)} "
            f"(generalisation ends {g(s['phases']['generalization_end'])})")


def mlp_norms(r: Path) -> str:
    pr = progress(r / "canonical")
    cols = {"W_in": "sq_norm_blocks.0.mlp.W_in", "W_out": "sq_norm_blocks.0.mlp.W_out", "W_E": "sq_norm_embed.W_E",
            "W_U": "sq_norm_unembed.W_U", "W_Q": "sq_norm_blocks.0.attn.W_Q"}
    return "; ".join(f"step {s}: " + ", ".join(f"{k} {g(at(pr, s, c), 0)}" for k, c in cols.items()) for s in (1000, 3000))


def train_loss_plateau(r: Path) -> str:
    s, m = summary(r / "canonical"), metrics(r / "canonical")
    mem = s["phases"]["memorization_end"]
    return (f"train loss {g(at(m, mem, 'train_loss'))} at memorisation's end ({g(mem)}), "
            f"{g(at(m, s['grokking_step'], 'train_loss'))} at grokking, {g(s['final']['train_loss'])} final")


def final_train_test(r: Path) -> str:
    f = summary(r / "canonical")["final"]
    return f"final train loss {g(f['train_loss'])} < test loss {g(f['test_loss'])}: {f['train_loss'] < f['test_loss']}"


def seeds_frequencies(r: Path) -> str:
    runs = [r / "canonical", *members(r / "seeds")]
    return "; ".join(f"seed {config(p)['train']['seed']}: {summary(p)['key_frequencies']}" for p in runs)


def seeds_phases(r: Path) -> str:
    rows = []
    for p in members(r / "seeds"):
        s = summary(p)
        ph, ch = s["phases"], s["phase_changes"]
        order = [ph[k] for k in ("memorization_end", "circuit_formation_end", "generalization_end") if ph[k] is not None]
        first = (ch.get("restricted_loss") or {}).get("start"), (ch.get("test_loss") or {}).get("start")
        rows.append(f"seed {config(p)['train']['seed']}: grokking {g(s['grokking_step'])}, "
                    f"phases in order {order == sorted(order)}, restricted change first "
                    f"{None not in first and first[0] < first[1]}")
    return "; ".join(rows)


def rand_control(r: Path) -> str:
    s = summary(r / "rand")
    return (f"key frequencies {s['key_frequencies']} (structure {s['structure']!r}); Gini of W_E "
            f"{g(s['final']['gini_W_E'])} (canonical {g(summary(r / 'canonical')['final']['gini_W_E'])}); final test acc "
            f"{g(s['final']['test_acc'], 3)}")


def sub_algorithm(r: Path) -> str:
    s, m = summary(r / "sub"), metrics(r / "sub")
    top = list((s.get("key_frequency_evidence") or {}).get("top_logit_share", {}).items())[:3]
    return (f"grokking {g(s['grokking_step'])} in {int(m.step.iloc[-1])} epochs (test loss {g(float(m.test_loss.max()))} at "
            f"its peak, {g(float(m.test_loss.iloc[-1]))} at the end); key frequencies {s['key_frequencies']}; logit fit of "
            f"cos(w(x - y - z)) explains {g(s['logit_fit_variance_explained'], 3)}; largest logit shares "
            + ", ".join(f"k={k}: {g(v)}" for k, v in top))


def frac95(r: Path) -> str:
    m = metrics(r / "frac95")
    return f"train acc 0.99 at {g(first(m[m.train_acc >= 0.99]))}, test acc 0.99 at {g(first(m[m.test_acc >= 0.99]))}"


def slingshots(r: Path) -> str:
    canonical = metrics(r / "canonical")
    after = first(canonical[canonical.train_acc >= 0.99])
    return (f"train-loss spikes (> {SPIKE:g}x the previous logged value, after train acc 0.99): float32 "
            f"{spikes(r / 'float32', after)} in {config(r / 'float32')['train']['epochs']} "
            f"epochs; float64 (canonical) {spikes(r / 'canonical', after)} in 40000")


def split_leak(r: Path) -> str:
    out = []
    for name in ("random", "symmetric"):
        m = metrics(r / f"split-{name}")
        step = first(m[m.train_acc >= 0.99])
        out.append(f"{name}: test acc {g(at(m, step, 'test_acc'), 3)} when train acc reaches 0.99 (step {g(step)})")
    return "; ".join(out)


def lr_change(r: Path) -> str:
    out = []
    for f in ("x1", "x10", "x100"):
        m = metrics(r / f"lr-{f}")
        out.append(f"{f}: grokking {g(first(m[m.test_acc >= 0.99]))}, final test acc {g(float(m.test_acc.iloc[-1]), 3)}")
    return "; ".join(out)


def lr_train_drop(r: Path) -> str:
    m = metrics(r / "lr-x10")
    after = m[m.step > 300]
    low = after.loc[after.train_acc.idxmin()] if len(after) else None
    return ("x10: lowest train acc after the switch " + (f"{g(float(low.train_acc), 3)} at step {int(low.step)}" if low is not None else "–"))


@functools.lru_cache(maxsize=None)
def _sweep(r: Path) -> pd.DataFrame:
    from grokscope.report.sweep_figures import with_outcomes
    from grokscope.sweeps import index_runs

    return with_outcomes(index_runs(r / "phase-diagram"))


def wd_delays(r: Path) -> str:
    df = _sweep(r)
    med = df.groupby("optim.weight_decay").grokking_step.median()
    rate = df.groupby("optim.weight_decay").grokking_step.apply(lambda x: x.notna().mean())
    return "; ".join(f"wd {k:g}: median grokking step {g(med[k])}, grok rate {g(rate[k], 2)}" for k in med.index)


def data_fragile(r: Path) -> str:
    df = _sweep(r)
    out = []
    for frac, grp in df.groupby("task.frac_train"):
        counts = grp.outcome.value_counts()
        out.append(f"frac {frac:g}: " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    return "; ".join(out)


@dataclass(frozen=True)
class Claim:
    id: str
    seed: str  # which text: 000 ... 004
    where: str
    quote: str  # the seed's words
    experiment: str  # an EXPERIMENTS id
    ours: Callable[[Path], str]
    figure: str  # the report figure that shows it


CLAIMS = [
    Claim("c-config", "004", "Model Details", "1L Transformer, learned positional embeddings, width 128, no LayerNorm, ReLU; "
          "AdamW, weight decay 1, learning rate 1e-3; full batch, 30% of the data, 40,000 epochs", "canonical",
          canonical_config, "config table at the top of the report"),
    Claim("c-grok", "004", "Introduction", "A training curve for a 1L Transformer trained to do addition mod 113, trained "
          "on 30% of the 113^2 pairs - it shows clear grokking", "canonical", grokking, "Loss and accuracy"),
    Claim("c-phases", "004", "Evolution of Circuits", "Memorisation (Epoch 0-1K) ... Interpolation (Epoch 1K-9K) ... "
          "Generalisation (Epoch 8K-12K) ... Cleaning Up Noise (Epoch 9K-13K)", "canonical", phases,
          "Loss and accuracy (phases shaded)"),
    Claim("c-delayed", "004", "Cleaning Up Noise", "there is a slightly delayed phase change in test loss", "canonical",
          restricted_first, "Progress measures"),
    Claim("c-before", "000", "post", "The noticeable change in the test loss starts occurring when the circuits are "
          "already almost right.", "canonical", restricted_before_test, "Progress measures"),
    Claim("c-early", "000", "post", "the circuits that at the end implement the general algorithm for modular addition "
          "start forming approximately at the start of the training", "canonical", early_circuits, "Progress measures"),
    Claim("c-excl-mem", "004", "Memorisation", "it's memorising rather than generalising as excluded loss is very close "
          "to train loss", "canonical", excluded_early, "Progress measures"),
    Claim("c-excl-div", "004", "Interpolation", "We see this in the smooth divergence of excluded loss from train loss",
          "canonical", excluded_diverges, "Progress measures"),
    Claim("c-trig", "004", "Evolution, metrics", "trig loss for the train and test set is almost equal (the lines are "
          "identical)", "canonical", restricted_train_test, "Progress measures"),
    Claim("c-keys", "004", "Calculating waves", "The model has decided to throw away all but a few frequencies", "canonical",
          key_frequencies, "Fourier norms of the embedding"),
    Claim("c-embed6", "004", "footnote 20", "The frequencies here are 14, 31, 35, 41, 42, 52", "canonical",
          embedding_frequencies, "Fourier norms of the embedding"),
    Claim("c-clusters", "004", "Calculating 2D products", "The neurons form 5 distinct clusters for each frequency",
          "canonical", neuron_clusters, "Neuron clusters"),
    Claim("c-wl", "004", "logits, W_logit caption", "all non-trivial output terms are cos(14x), sin(14x)", "canonical",
          w_l_share, "Neuron clusters"),
    Claim("c-fit", "004", "logit fit", "the resulting approximated logits explains 95% of the variance in the original "
          "logits ... a significant drop in loss, from 2e-7 to 4.7e-8", "canonical", logit_fit, "Fourier spectrum of the logits"),
    Claim("c-gini", "004", "Evolution, caption", "Norm of the embedding of each wave at epoch 7K, 2K epochs before the "
          "start of grokking. It's clearly begun to be sparse!", "canonical", gini_over_training,
          "Fourier norms of the embedding over training"),
    Claim("c-norm-mem", "004", "Memorisation", "the incentive to memorise is far stronger than the incentive to have low "
          "weights, as total weights rise a lot", "canonical", weight_norm, "Progress measures"),
    Claim("c-norm-mlp", "004", "Interpolation", "from epoch 1K-3K, when the weights for the MLP layer W_in, W_out drop in "
          "norm and meet the other weight matrices", "canonical", mlp_norms, "Progress measures"),
    Claim("c-norm-gen", "004", "Generalisation", "We further see a rapid acceleration in the decrease in total weights",
          "canonical", weight_norm_fall, "Progress measures"),
    Claim("c-1e-7", "004", "Future Directions", "Once a model has memorised, loss can be around 1e-7.", "canonical",
          train_loss_plateau, "Loss and accuracy"),
    Claim("c-remnant", "004", "Stability", "train loss is still less than test loss", "canonical", final_train_test,
          "Loss and accuracy"),
    Claim("s-seeds", "004", "footnote 20", "the specific frequencies and the number of frequencies are arbitrary, and vary "
          "between random seeds", "seeds", seeds_frequencies, "report of each member"),
    Claim("s-consistent", "004", "Future Directions", "Train the model for a bunch of different random seeds, and see how "
          "consistent these observations are.", "seeds", seeds_phases, "report of each member"),
    Claim("r-basis", "004", "Calculating waves", "we would expect to see a basically uniform plot if this was not a "
          "privileged basis", "rand", rand_control, "Fourier norms of the embedding"),
    Claim("sub", "004", "Future Directions", "I recommend training your own transformer for modular subtraction, figuring "
          "out the analogous algorithm it should be using", "sub", sub_algorithm, "Fourier spectrum of the logits"),
    Claim("f95", "004", "Empirical Observations", "Modular addition mod 113 loss curve, trained on 95% of the data "
          "(a phase change in train and test loss, no grokking)", "frac95", frac95, "Loss and accuracy"),
    Claim("f32", "004", "Slingshot mechanism", "the slingshots are the result of a float32 precision error in "
          "log_softmax ... fixed by casting your logits to float64", "float32", slingshots, "Loss and accuracy"),
    Claim("split", "003", "Rohin reply", "the validation accuracy hits almost 0.5 once the training accuracy is 1, which "
          "is about what you'd get if you understood commutativity but nothing else", "split", split_leak,
          "Loss and accuracy"),
    Claim("lr", "003", "Tom Lieberum", "I set the LR to 5x the normal value (100x tanked the accuracy, 10x still works "
          "though) ... 10x higher LR makes the grokking stage go from 1700 steps to 150 steps", "lr", lr_change,
          "Loss and accuracy (comparison report)"),
    Claim("lr-drop", "003", "Quintin reply", "increasing the learning rate causes the training accuracy to fall to the "
          "validation accuracy, after which they begin to increase together", "lr", lr_train_drop, "Loss and accuracy"),
    Claim("wd", "004", "Weight Decay", "Lower weight decay just delays grokking rather than stopping it.", "phase-diagram",
          wd_delays, "Grokking steps across seeds (sweep report)"),
    Claim("data", "004", "self-review", "a bit more or less data makes it memorise or generalise immediately",
          "phase-diagram", data_fragile, "Phase diagram (sweep report)"),
]


# -- running -----------------------------------------------------------------------------------


def _command(line: str, runs: Path, small: bool) -> list[str]:
    words = [str(ROOT / w) if w.startswith("examples/") else w for w in shlex.split(line.replace("RUNS", str(runs)))]
    if small and words[1] in ("train", "sweep"):
        words += SMALL
    return words


def run_experiment(exp: Experiment, runs: Path, small: bool) -> None:
    """Run the commands; a train line whose runs exist resumes them instead (a finished run says so)."""
    from grokscope.cli import main as grokscope  # in-process: the same code path as the shell, without the start-up

    for line in exp.commands:
        words = _command(line, runs, small)
        lines = [words[1:]]
        if words[1] == "train":
            out = Path(words[words.index("--out") + 1])
            existing = [out] if (out / "config.json").is_file() else members(out) if out.is_dir() else []
            lines = [["train", "--resume", str(run)] for run in existing] or lines
        for argv in lines:
            if grokscope(argv) != 0:
                raise SystemExit(f"{exp.id}: `grokscope {shlex.join(argv)}` failed")


def measure(runs: Path, only: set[str]) -> dict[str, str]:
    return {c.id: c.ours(runs) for c in CLAIMS if c.experiment in only}


# -- the docs table ----------------------------------------------------------------------------

TABLE = re.compile(r"(<!-- reproduction table -->\n).*?(<!-- /reproduction table -->)", re.S)
COMMANDS = re.compile(r"(<!-- reproduction experiments -->\n).*?(<!-- /reproduction experiments -->)", re.S)
SKIP = "<!-- docs-test: skip: full size; tests/test_reproduction.py runs these commands at 8 epochs -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _figure(c: Claim) -> str:
    title = c.figure.split(" (")[0]  # "Loss and accuracy (phases shaded)" is the figure "Loss and accuracy"
    png = FIGURES.get(title) if c.experiment == "canonical" else None
    return f"[{_cell(c.figure)}](img/reproduction/{png}.png)" if png else _cell(c.figure)


def table(results: dict) -> str:
    rows = ["| claim | seed | the seed says | experiment | ours | figure |", "|---|---|---|---|---|---|"]
    for c in CLAIMS:
        ours = results["claims"].get(c.id, "not run yet")
        rows.append(f"| {c.id} | {c.seed}, {_cell(c.where)} | \"{_cell(c.quote)}\" | [{c.experiment}](#{c.experiment}) "
                    f"| {_cell(ours)} | {_figure(c)} |")
    return f"Measured {results['date']} on {results['machine']}.\n\n" + "\n".join(rows) + "\n"


def experiments() -> str:
    out = []
    for e in EXPERIMENTS.values():
        lines = "\n".join(line.replace("RUNS", "runs/reproduction") for line in e.commands)
        out.append(f'<a id="{e.id}"></a>\n\n### {e.id}: {e.title}\n\n{e.cost} at full size.\n\n{SKIP}\n```bash\n{lines}\n```\n')
    return "\n".join(out)


def render(text: str, results: dict) -> str:
    """docs/reproduction.md with its generated parts (the experiments' commands, the table) redrawn."""
    text = COMMANDS.sub(lambda m: m.group(1) + experiments() + m.group(2), text)
    return TABLE.sub(lambda m: m.group(1) + table(results) + m.group(2), text)


def export_figures(run: Path) -> None:
    """The canonical report's figures that the table links, as PNGs (kaleido and a Chromium needed)."""
    from grokscope.cli import main as grokscope

    if grokscope(["report", str(run), "--png", str(run / "figures")]) != 0:
        raise SystemExit("the PNG export failed: pip install 'grokscope[png]' and a Chrome/Chromium")
    IMG.mkdir(parents=True, exist_ok=True)
    for name in FIGURES.values():
        (IMG / f"{name}.png").write_bytes((run / "figures" / f"{name}.png").read_bytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/reproduction", help="where the runs go (default runs/reproduction)")
    ap.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), help="these experiments only")
    ap.add_argument("--small", action="store_true", help="every command at a few epochs: checks the commands, not the claims")
    ap.add_argument("--write-docs", action="store_true", help="record the numbers and rewrite docs/reproduction.md's table")
    args = ap.parse_args()
    if args.small and args.write_docs:
        ap.error("--small numbers are not results: leave out --write-docs")
    runs = Path(args.out).resolve()
    only = set(args.only or EXPERIMENTS)
    print(machine_line())
    for exp in EXPERIMENTS.values():
        if exp.id in only:
            t0 = time.perf_counter()
            run_experiment(exp, runs, args.small)
            print(f"{exp.id}: {time.perf_counter() - t0:.0f} s", flush=True)
    measured = measure(runs, only)
    for cid, text in measured.items():
        print(f"{cid}: {text}")
    if args.write_docs:
        old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"claims": {}}
        results = {"date": time.strftime("%Y-%m-%d"), "machine": machine_line().removeprefix("machine: "),
                   "claims": {**old["claims"], **measured}}
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        if "canonical" in only:
            export_figures(runs / "canonical")
        DOC.write_text(render(DOC.read_text(), results))
        print(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
