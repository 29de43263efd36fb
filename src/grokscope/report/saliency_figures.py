"""Figures of what `grokscope saliency` wrote into RUN/saliency/: the histogram of per-unit saliency
over training with its skew, and the damage of deleting the top-k salient units against k random ones.
The report shows each one only when the files exist.

    from grokscope.report import saliency_figures
    saliency_figures.deletion("runs/nanda2023")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.report.data import MissingData
from grokscope.report.figures import PALETTE, _data, _f32, _layout, _shade_phases, _vline


def _read(src: Any, name: str) -> pd.DataFrame:
    data = _data(src)
    f = Path(data.path or ".") / "saliency" / name
    if not f.is_file():
        raise MissingData(f"no saliency/{name}: run `grokscope saliency {data.path}` first")
    return pd.read_parquet(f)


def has_saliency(data: Any) -> bool:
    return (Path(getattr(data, "path", None) or ".") / "saliency" / "progress.parquet").is_file()


def saliency_histograms(src: Any) -> go.Figure:
    """Per group (a layer's neurons or heads): the histogram of the units' saliency at each checkpoint
    as a heatmap (x step, y log10 saliency, colour the share of units), and its skew below."""
    units, prog = _read(src, "units.parquet"), _read(src, "progress.parquet").sort_values("step")
    groups = sorted(units["group"].unique(), key=lambda g: ("heads" in g, g))
    fig = make_subplots(rows=2, cols=len(groups), subplot_titles=groups, row_heights=[0.7, 0.3], vertical_spacing=0.1,
                        horizontal_spacing=0.08)
    for col, group in enumerate(groups, start=1):
        u = units[units["group"] == group]
        sal = u["saliency"].to_numpy()
        pos = np.log10(sal[sal > 0]) if (sal > 0).any() else np.zeros(1)
        # the range of the salient units; dead units (saliency 0) and the bottom 2 % fall in the lowest bin
        lo, hi = np.percentile(pos, 2), pos.max()
        edges = np.linspace(lo, max(hi, lo + 1e-6) + 1e-9, 31)
        steps = sorted(u["step"].unique())
        z = np.stack([np.histogram(np.log10(u.loc[u["step"] == s, "saliency"].clip(lower=10**lo)), edges)[0] for s in steps])
        z = z / np.maximum(z.sum(1, keepdims=True), 1)
        fig.add_trace(go.Heatmap(x=steps, y=0.5 * (edges[1:] + edges[:-1]), z=_f32(z.T), colorscale="Viridis",
                                 showscale=col == 1, colorbar=dict(title="share", len=0.65, y=0.68),
                                 hovertemplate="step %{x}<br>10^%{y:.2f}: %{z:.2f}<extra></extra>"), row=1, col=col)
        key = group.replace(" ", "_")
        fig.add_trace(go.Scatter(x=prog["step"], y=_f32(prog[f"{key}.skew"]), mode="lines+markers", name=f"{group}: skew",
                                 line=dict(color=PALETTE[col - 1])), row=2, col=col)
        fig.update_yaxes(title_text="log10 saliency" if col == 1 else None, row=1, col=col)
        fig.update_yaxes(title_text="skew" if col == 1 else None, row=2, col=col)
        fig.update_xaxes(title_text="step", row=2, col=col)
    return _layout(fig, "Saliency of each unit over training (median |integrated gradient|), and the histogram's skew",
                   height=620, showlegend=False)


def deletion(src: Any) -> go.Figure:
    """Test accuracy and loss with the top-k salient units deleted (solid), k random ones (dashed) and
    none (grey), per group over training."""
    data = _data(src)
    prog = _read(src, "progress.parquet").sort_values("step")
    groups = sorted({c.split(".")[0] for c in prog.columns if c.endswith(".topk_test_acc")}, key=lambda g: ("heads" in g, g))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "test loss"), horizontal_spacing=0.08)
    x = prog["step"]
    for col, metric in ((1, "acc"), (2, "loss")):
        fig.add_trace(go.Scatter(x=x, y=_f32(prog[f"test_{metric}"]), name="none deleted", legendgroup="none",
                                 showlegend=col == 1, line=dict(color="#888", width=1)), row=1, col=col)
        for i, g in enumerate(groups):
            color, k = PALETTE[i % len(PALETTE)], int(prog[f"{g}.k"].iloc[-1])
            name = g.replace("_", " ")
            fig.add_trace(go.Scatter(x=x, y=_f32(prog[f"{g}.topk_test_{metric}"]), name=f"{name}: top-{k} deleted",
                                     legendgroup=g + "top", showlegend=col == 1, line=dict(color=color)), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=_f32(prog[f"{g}.randomk_test_{metric}"]), name=f"{name}: random {k} deleted",
                                     legendgroup=g + "rand", showlegend=col == 1, line=dict(color=color, dash="dash")),
                          row=1, col=col)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="step")
    _shade_phases(fig, data.phases, float(max(x.min(), 1)), n_axes=2)
    _vline(fig, (data.summary or {}).get("grokking_step"), 2, "test acc >= 0.99")
    return _layout(fig, "Deleting the most salient units against deleting random ones", height=440)
