"""The irreducible-representation analysis's figure (analysis/irreps/): the S_n analogue of the
Fourier progress measures. Takes a run (a path, a Run or a RunData) or the analysis's progress table.

    from grokscope.report import irrep_figures
    fig = irrep_figures.irrep_progress("runs/s5")
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.report import figures as G
from grokscope.report.data import MissingData
from grokscope.report.figures import PALETTE, TEST, TRAIN, _f32, _frame, _layout, _positive_steps, _shade_phases

ANALYSIS = "irreps"


def irrep_progress(src: Any, key_irreps: Sequence[str] | None = None) -> go.Figure:
    """Restricted / excluded loss (the key irreps' part of the logits kept / removed), each irrep's
    share of the logits and of W_E, and the share of neurons dominated by one irrep, over checkpoints.
    Key irreps are drawn solid, the others dotted."""
    table, data = _frame(src, "progress", ANALYSIS)
    summary = (data.analyses[ANALYSIS].summary or {}) if data is not None else {}
    keys = set(key_irreps if key_irreps is not None else summary.get("key_irreps") or [])
    pr = _positive_steps(table)
    if pr.empty:
        raise MissingData("no analysed checkpoints after step 0")
    step = pr["step"].to_numpy(np.int64)
    names = [c.split(".", 1)[1] for c in pr.columns if c.startswith("logit_share.")]
    labels = {r["name"]: r.get("label") or "" for r in summary.get("irreps") or []}
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.16, horizontal_spacing=0.08,
                        subplot_titles=("restricted and excluded loss", "share of the logits (functions of x y)",
                                        "share of the embedding W_E", "neurons dominated by one irrep"))

    def line(y: Any, name: str, r: int, c: int, legend: bool = True, **style: Any) -> None:
        fig.add_trace(go.Scatter(x=step, y=_f32(y), name=name, mode="lines", line=style, legendgroup=name,
                                 showlegend=legend), row=r, col=c)

    metrics = data.metrics if data is not None else None
    if metrics is not None and len(metrics):
        m = _positive_steps(metrics)
        for col, color in (("train_loss", TRAIN), ("test_loss", TEST)):
            fig.add_trace(go.Scatter(x=m["step"], y=_f32(m[col]), name=col.replace("_", " "), mode="lines",
                                     line=dict(color=color)), row=1, col=1)
    for col, name, color, dash in (("restricted_loss_train", "restricted loss (train)", "#2ca02c", "dash"),
                                   ("restricted_loss_test", "restricted loss (test)", "#98df8a", "dash"),
                                   ("excluded_loss_train", "excluded loss (train)", "#9467bd", "dot")):
        if col in pr and pr[col].notna().any():
            line(pr[col], name, 1, 1, color=color, dash=dash)
    for i, name in enumerate(names):
        label = f"{name} {labels.get(name, '')}".strip() + (" (key)" if name in keys else "")
        style = dict(color=PALETTE[i % len(PALETTE)], dash="solid" if name in keys else "dot")
        line(pr[f"logit_share.{name}"], label, 1, 2, **style)
        if f"W_E_share.{name}" in pr:
            line(pr[f"W_E_share.{name}"], label, 2, 1, legend=False, **style)
    if "frac_neurons_single_irrep" in pr:
        line(pr["frac_neurons_single_irrep"], "share of single-irrep neurons", 2, 2, color="#17becf")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=2)
    _layout(fig, f"Irreducible representations of {summary.get('irrep_group') or 'the group'}", height=680)
    if data is not None:
        _shade_phases(fig, data.phases, float(step[0]), n_axes=4)
    G._step_axis(fig, 4, step[0], step[-1])
    return fig
