"""Sweep figures, from the run index (grokscope.sweeps.index) of a sweep folder.

Each trial gets an outcome (the rule, AT_ONCE = 2):
  never groks           no logged step with test_acc >= 0.99 within the budget;
  generalises at once   grokking step <= AT_ONCE x the memorisation step (train_acc >= 0.99), or no memorisation first;
  groks                 otherwise: generalisation follows memorisation after a delay.
A cell of the phase diagram (one value of each of two swept fields, all seeds) shows its grok
rate (share of trials that reach 0.99 test accuracy), the median grokking step and the most
common outcome ("mixed" on a tie).
"""

from __future__ import annotations

import html
import json
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.report.data import MissingData
from grokscope.report.figures import PALETTE, _layout
from grokscope.sweeps.index import AT_ONCE, OUTCOMES, outcome

def with_outcomes(index: pd.DataFrame) -> pd.DataFrame:
    df = index.copy()
    df["outcome"] = [outcome(g, m) for g, m in zip(df["grokking_step"], df["memorization_step"])]
    return df


def _fields(swept: Sequence[str]) -> list[str]:
    return [f for f in swept if f != "train.seed"]


def phase_diagram(index: pd.DataFrame, swept: Sequence[str]) -> go.Figure:
    """Grok rate over the first two swept fields (one field: a single row), median grokking step as text."""
    fields = _fields(swept)
    if not fields or index.empty:
        raise MissingData("a phase diagram needs at least one swept field besides the seed")
    df = with_outcomes(index)
    x = fields[0]
    y = fields[1] if len(fields) > 1 else None
    xs = sorted(df[x].unique())
    ys = sorted(df[y].unique()) if y else [None]
    z, text = [], []
    for yv in ys:
        zr, tr = [], []
        for xv in xs:
            cell = df[(df[x] == xv) & ((df[y] == yv) if y else True)]
            rate = float(cell["grokking_step"].notna().mean()) if len(cell) else np.nan
            med = cell["grokking_step"].median()
            modes = cell["outcome"].mode()
            common = "" if not len(cell) else modes.iloc[0] if len(modes) == 1 else "mixed"
            zr.append(rate)
            tr.append(f"{'-' if pd.isna(med) else int(med)}<br>{common}<br>{int(cell['grokking_step'].notna().sum())}/{len(cell)}")
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(
        z=np.asarray(z, dtype=np.float32), x=[str(v) for v in xs], y=[str(v) for v in ys] if y else [""],
        text=text, texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1,
        colorbar=dict(title="grok rate"), hovertemplate=f"{x}=%{{x}}" + (f", {y}=%{{y}}" if y else "") + ": %{text}<extra></extra>"))
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y or "", type="category")
    return _layout(fig, "Phase diagram: grok rate (colour); median grokking step, most common outcome, trials that grokked",
                   height=max(320, 110 * len(ys) + 160))


def grokking_distribution(index: pd.DataFrame, swept: Sequence[str]) -> go.Figure:
    """Grokking steps of every trial, one column per setting (all seeds); trials that never grok listed apart."""
    fields = _fields(swept)
    df = with_outcomes(index)
    if df["grokking_step"].notna().sum() == 0:
        raise MissingData("no trial reached 0.99 test accuracy within its budget")
    label = df[fields].astype(str).agg(", ".join, axis=1) if fields else pd.Series(["all"] * len(df), index=df.index)
    fig = go.Figure()
    for i, (name, cell) in enumerate(df.groupby(label, sort=True)):
        steps = cell["grokking_step"].dropna()
        never = int(cell["grokking_step"].isna().sum())
        fig.add_trace(go.Box(y=steps.astype(np.float32), name=html.escape(f"{name} ({never} never)"), boxpoints="all",
                             jitter=0.3, marker_color=PALETTE[i % len(PALETTE)], showlegend=False))
    fig.update_yaxes(title_text="grokking step", rangemode="tozero")
    fig.update_xaxes(title_text=", ".join(fields) or "trials")
    return _layout(fig, "Grokking step across seeds, per setting", height=440)


def metric_vs_fields(index: pd.DataFrame, swept: Sequence[str], metric: str = "final_test_acc") -> go.Figure:
    """`metric` of every trial against each swept field (one panel per field), coloured by outcome."""
    fields = _fields(swept)
    if not fields or metric not in index:
        raise MissingData(f"no swept field, or no {metric} in the index")
    df = with_outcomes(index)
    fig = make_subplots(rows=1, cols=len(fields), subplot_titles=fields, horizontal_spacing=0.06)
    colors = dict(zip(OUTCOMES, ["#d62728", "#1f77b4", "#2ca02c"]))
    for c, f in enumerate(fields):
        for o in OUTCOMES:
            part = df[df["outcome"] == o]
            fig.add_trace(go.Scatter(x=part[f].astype(str) if part[f].dtype == object else part[f], y=part[metric],
                                     mode="markers", name=o, legendgroup=o, showlegend=(c == 0),
                                     marker=dict(color=colors[o], size=8, opacity=0.8)), row=1, col=c + 1)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    return _layout(fig, f"{metric} against each swept field", height=400)


def key_frequency_agreement(index: pd.DataFrame, swept: Sequence[str]) -> go.Figure:
    """Per setting with two or more analysed seeds: the mean Jaccard overlap of their key-frequency
    sets over all pairs (1 = all agree)."""
    if "key_frequencies" not in index or index["key_frequencies"].isna().all():
        raise MissingData("no trial was analysed (set `analyze: true` in the spec, or run grokscope analyze on the trials)")
    fields = _fields(swept)
    df = index.dropna(subset=["key_frequencies"])
    sets = df["key_frequencies"].map(lambda s: frozenset(json.loads(s)))
    label = df[fields].astype(str).agg(", ".join, axis=1) if fields else pd.Series(["all"] * len(df), index=df.index)
    names, values = [], []
    for name, idx in label.groupby(label).groups.items():
        ks = [sets[i] for i in idx]
        pairs = [(a, b) for i, a in enumerate(ks) for b in ks[i + 1:]]
        if not pairs:  # one analysed seed: nothing to agree with
            continue
        jac = [len(a & b) / len(a | b) if (a | b) else 1.0 for a, b in pairs]
        names.append(html.escape(str(name)))
        values.append(float(np.mean(jac)))
    if not names:
        raise MissingData("no setting has two analysed seeds to compare")
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=PALETTE[0]))
    fig.update_yaxes(title_text="mean Jaccard overlap across seeds", range=[0, 1.02])
    return _layout(fig, "Do seeds find the same key frequencies?", height=380)


def crossover_trials(doc: dict) -> go.Figure:
    """A crossover search (grokscope.sweeps.crossover): each trial's data size against the step where
    it memorised (train_acc >= target, hollow) and generalised (test_acc >= target, filled; a cross at
    the budget where it never did), coloured by outcome; the bracket found is shaded."""
    trials = pd.DataFrame(doc.get("trials") or [])
    if trials.empty:
        raise MissingData("no trial has finished yet")
    search, result = doc.get("search") or {}, doc.get("crossover") or {}
    colors = dict(zip(OUTCOMES, ["#d62728", "#1f77b4", "#2ca02c"]))
    fig = go.Figure()
    for o in OUTCOMES:
        t = trials[trials.outcome == o]
        if t.empty:
            continue
        gen = t.generalization_step.where(t.generalised, t.last_step)
        fig.add_trace(go.Scatter(x=t.value, y=gen.astype(float), mode="markers", name=o,
                                 marker=dict(color=colors[o], size=11, symbol="circle" if o != "never groks" else "x"),
                                 text=[f"trial {i + 1}: {p}" for i, p in zip(t.index, t.path)],
                                 hovertemplate="%{text}<br>size %{x}<br>step %{y}<extra></extra>"))
        fig.add_trace(go.Scatter(x=t.value, y=t.memorization_step.astype(float), mode="markers", showlegend=False,
                                 marker=dict(color=colors[o], size=9, symbol="circle-open"), hoverinfo="skip"))
    field = search.get("field", "data size")
    title = f"Crossover search over {field}"
    if result.get("below") is not None and result.get("above") is not None:
        fig.add_vrect(x0=result["below"], x1=result["above"], fillcolor="#ffbb78", opacity=0.35, line_width=0)
        title += f": between {result['below']:.4g} and {result['above']:.4g}"
    fig.update_xaxes(title_text=f"{field} (log)", type="log")
    fig.update_yaxes(title_text="step (log)", type="log")
    return _layout(fig, title)
