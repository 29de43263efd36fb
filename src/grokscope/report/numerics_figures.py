"""Figures of the `numerics` analysis: softmax collapse over training, with the loss spikes (the
loss curves mark the spikes and the LR events too: `figures.mark_events`).

    from grokscope.report import numerics_figures
    numerics_figures.softmax_collapse("runs/float32")
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from grokscope.report.data import MissingData
from grokscope.report.figures import PALETTE, TRAIN, _data, _f32, _layout, _positive_steps, _step_axis, spikes

COLLAPSE = [("softmax_collapse_float32", "float32", "#d62728", "dot"), ("softmax_collapse_float64", "float64", "#1f77b4", "dot"),
            ("softmax_collapse", "the run's own loss", "#222222", None)]


def has_collapse(data: Any) -> bool:
    return "numerics" in getattr(data, "analyses", {})


def softmax_collapse(src: Any) -> go.Figure:
    """The share of training targets whose softmax has rounded to exactly one-hot, per checkpoint, in
    float32, in float64 and in the run's own loss, with the train loss and its spikes."""
    data = _data(src)
    df = data.table("numerics", "progress").sort_values("step")
    df = df[df["step"] > 0]
    if df.empty:
        raise MissingData("no analysed checkpoint after step 0")
    fig = go.Figure()
    for col, label, color, dash in COLLAPSE:
        fig.add_trace(go.Scatter(x=df["step"], y=_f32(df[col]), mode="lines+markers", name=f"collapsed in {label}",
                                 line=dict(color=color, dash=dash, width=1 if dash else 3)))
    m = data.metrics
    if m is not None and len(m):
        mm = _positive_steps(m)
        fig.add_trace(go.Scatter(x=mm["step"], y=_f32(mm["train_loss"]), name="train loss", yaxis="y2",
                                 line=dict(color=TRAIN, width=1)))
        found = [s for s in spikes(data) if s["peak"] in set(mm["step"])]
        if found:
            loss = mm.set_index("step")["train_loss"]
            fig.add_trace(go.Scatter(x=[s["peak"] for s in found], y=_f32(loss.loc[[s["peak"] for s in found]].to_numpy()),
                                     yaxis="y2", mode="markers", name=f"loss spikes ({len(found)})",
                                     marker=dict(symbol="x", size=10, color="#ff7f0e", line=dict(width=2))))
        fig.update_layout(yaxis2=dict(title="train loss", overlaying="y", side="right", type="log", showgrid=False,
                                      dtick=1, exponentformat="power"))
    fig.update_layout(yaxis=dict(title="share of training targets collapsed", range=[0, 1.02]), xaxis=dict(title="step"),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    _layout(fig, "Softmax collapse: training targets whose correct-class probability rounds to exactly 1")
    _step_axis(fig, 1, float(df["step"].iloc[0]), float(df["step"].iloc[-1]))
    return fig


def compare_collapse(runs: Sequence[Any]) -> go.Figure:
    """Each run's softmax collapse in its own loss (solid) and its spike count, overlaid."""
    fig, shown = go.Figure(), 0
    for i, r in enumerate(runs):
        d = _data(r)
        if "numerics" not in d.analyses or "progress" not in d.analyses["numerics"].tables:
            continue
        df = d.analyses["numerics"].tables["progress"].sort_values("step")
        df = df[df["step"] > 0]
        tc = d.config.get("train", {})
        label = (f"{i + 1}: {html.escape(d.name)} ({tc.get('loss_dtype', 'float64')} {tc.get('loss', 'cross_entropy')}; "
                 f"{len(spikes(d))} spikes)")
        fig.add_trace(go.Scatter(x=df["step"], y=_f32(df["softmax_collapse"]), mode="lines", name=label,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
        shown += 1
    if not shown:
        raise MissingData("none of the runs has a numerics analysis: run `grokscope analyze` on them")
    fig.update_layout(yaxis=dict(title="share collapsed in the run's own loss", range=[0, 1.02]), xaxis=dict(title="step"))
    steps = np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data if t.x is not None and len(t.x)])
    _layout(fig, "Softmax collapse of each run, in the dtype and loss it trained with")
    if steps.size:
        _step_axis(fig, 1, float(steps.min()), float(steps.max()))
    return fig
