"""The `formation` analysis's figures (chunked MLPs, seed 002): each chunk's circle over training,
the formation timeline of one run or many, and the coincidence test against a Poisson process.

    from grokscope.report import formation_figures
    formation_figures.chunk_circles("runs/chunked16/seed0")
    formation_figures.formation_timeline(["runs/chunked16/seed0", "runs/chunked16/seed1"])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.analysis import subsample_steps
from grokscope.report.data import MissingData, RunData
from grokscope.report.figures import MAX_FRAMES, OTHER_COLOR, TEST, _animate, _data, _f32, _grid, _hide_unused, _layout

ANALYSIS = "formation"


def _summary(data: RunData) -> dict:
    a = data.analyses.get(ANALYSIS)
    if a is None or a.summary is None:
        raise MissingData(f"no formation analysis: run `grokscope analyze {data.path}` first")
    return a.summary


def _formed(summary: dict) -> dict[int, dict]:
    return {int(c): v for c, v in (summary.get("chunk_formation") or {}).items()}


def _analysed(runs: Any, has: Any) -> list[RunData]:
    """The runs (one or a list) whose formation analysis `has` what a figure needs; MissingData if none."""
    datas = [_data(r) for r in (runs if isinstance(runs, (list, tuple)) else [runs])]
    datas = [d for d in datas if ANALYSIS in d.analyses and has(d.analyses[ANALYSIS])]
    if not datas:
        raise MissingData("no run has a formation analysis (chunked MLPs on modular tasks; `grokscope analyze RUN`)")
    return datas


def chunk_circles(src: Any, max_frames: int = MAX_FRAMES) -> go.Figure:
    """Every chunk's p token points over training (play button and step slider), one panel per chunk.

    The grey ring joins the tokens in the order k x mod p of the chunk's final frequency k, and the
    dots are coloured by k x mod p, so a formed circuit shows as the dots settling on the ring in
    colour order. Titles give k and the formation step.
    """
    data = _data(src)
    df, formed = data.table(ANALYSIS, "chunk_points"), _formed(_summary(data))
    chunks = sorted(int(c) for c in df["chunk"].unique())
    steps = subsample_steps(df["step"].unique(), max_frames)
    df = df[df["step"].isin(steps)]
    tokens = np.sort(df["token"].unique())
    p = len(tokens)
    # chunk_points lists each chunk's tokens in group order: the a-th row of a chunk is the group's a-th element
    order = {int(t): a for a, t in enumerate(df[(df["step"] == steps[0]) & (df["chunk"] == chunks[0])]["token"])}
    pos = np.array([order.get(int(t), 0) for t in tokens])
    titles = []
    for c in chunks:
        f = formed.get(c) or {}
        titles.append(f"chunk {c}: " + (f"k = {abs(f['freq'])}, formed at {f['step']}" if f.get("step") is not None
                                        else "no circle"))
    rows, cols = _grid(len(chunks), 4)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.1)
    grouped = {key: g.set_index("token").reindex(tokens) for key, g in df.groupby(["step", "chunk"])}
    lims = {c: float(np.abs(df.loc[df["chunk"] == c, ["x", "y"]].to_numpy()).max()) * 1.1 or 1.0 for c in chunks}
    rings, hues = {}, {}
    for c in chunks:  # a formed chunk's dots go round the colour wheel in order: colour = k x mod p
        k = abs(int((formed.get(c) or {}).get("freq") or 1))
        hues[c] = (k * pos) % p
        ring = list(np.argsort(hues[c], kind="stable"))
        rings[c] = ring + ring[:1]

    def traces(s: int, style: bool) -> list[go.Scatter]:
        out = []
        for c in chunks:
            g = grouped.get((s, c))
            xy = g[["x", "y"]].to_numpy(np.float32) if g is not None else np.full((p, 2), np.nan, np.float32)
            line, dots = go.Scatter(x=xy[rings[c], 0], y=xy[rings[c], 1]), go.Scatter(x=xy[:, 0], y=xy[:, 1])
            if style:
                line.update(mode="lines", line=dict(color="#c0c0c0", width=1), hoverinfo="skip", showlegend=False)
                dots.update(mode="markers", showlegend=False, customdata=tokens.astype(np.int32),
                            marker=dict(size=5, color=hues[c].astype(np.int32), colorscale="Twilight", cmin=0, cmax=p - 1),
                            hovertemplate="token %{customdata}<extra></extra>")
            out += [line, dots]
        return out

    for i, tr in enumerate(traces(steps[-1], style=True)):
        j = i // 2
        fig.add_trace(tr, row=j // cols + 1, col=j % cols + 1)
    for a, c in enumerate(chunks):
        suffix = "" if a == 0 else str(a + 1)
        fig.layout[f"xaxis{suffix}"].update(range=[-lims[c], lims[c]], showticklabels=False)
        fig.layout[f"yaxis{suffix}"].update(range=[-lims[c], lims[c]], showticklabels=False,
                                            scaleanchor=f"x{suffix}", scaleratio=1)
    _hide_unused(fig, len(chunks), rows, cols)
    _layout(fig, "Each chunk's embedding of the p tokens over training", height=250 * rows + 170,
            margin=dict(l=30, r=20, t=70, b=110))
    fig.update_annotations(font_size=11)
    frames = [go.Frame(data=traces(s, style=False), name=str(s)) for s in steps]
    return _animate(fig, frames, steps)


def formation_timeline(runs: Any) -> go.Figure:
    """Circularity of every chunk (a row) of every run (a block of rows) over training, as a heatmap,
    with a cross at each chunk's formation step; crosses in a pair or triple (within the analysis
    window of another formation of the same run) are red, single formations black."""
    from grokscope.analysis.formation import groups

    datas = _analysed(runs, lambda a: "progress" in a.tables)
    steps = sorted({int(s) for d in datas for s in d.table(ANALYSIS, "progress")["step"]})
    z, labels, xs, ys, colors, hover, bounds = [], [], [], [], [], [], []
    for d in datas:
        prog = d.table(ANALYSIS, "progress").set_index("step").reindex(steps)
        summary = _summary(d)
        formed = _formed(summary)
        window = (summary.get("rule") or {}).get("window", 0)
        times = [v["step"] for v in formed.values() if v.get("step") is not None]
        grouped = {float(t) for g in groups(np.array(times), window) if len(g) >= 2 for t in g}
        chunks = sorted(formed)
        for c in chunks:
            label = f"{d.name} c{c}" if len(datas) > 1 else f"chunk {c}"
            z.append(_f32(prog[f"circularity/c{c}"]))
            labels.append(label)
            f = formed[c]
            if f.get("step") is not None:
                xs.append(f["step"])
                ys.append(label)
                colors.append(TEST if float(f["step"]) in grouped else "#111")
                hover.append(f"{label}: formed at step {f['step']}, k = {abs(f['freq'])}")
        bounds.append(len(labels))
    fig = go.Figure(go.Heatmap(z=np.stack(z), x=steps, y=labels, colorscale="Blues", zmin=0, zmax=1,
                               colorbar=dict(title="circularity", len=0.6), hovertemplate="%{y}, step %{x}: "
                               "circularity %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(symbol="x", size=8, color=colors),
                             text=hover, hovertemplate="%{text}<extra></extra>", showlegend=False))
    for b in bounds[:-1]:
        fig.add_hline(y=b - 0.5, line=dict(color="#888", width=1))
    fig.update_yaxes(range=[len(labels) - 0.5, -0.5], tickfont=dict(size=9 if len(labels) > 40 else 11))
    fig.update_xaxes(title="step")
    return _layout(fig, "Formation timeline: each chunk's circularity; x = formation (red: in a pair or triple)",
                   height=min(max(260, 14 * len(labels) + 140), 2200))


def coincidence(runs: Any, n_sims: int = 10000) -> go.Figure:
    """The coincidence test over the runs' formations: the null distribution of the number of
    formations that come in pairs or triples (simulated Poisson times), and the observed number."""
    from grokscope.analysis.chunks import coincidence_from_summaries

    summaries = [d.analyses[ANALYSIS].summary for d in _analysed(runs, lambda a: a.summary is not None)]
    test = coincidence_from_summaries(summaries, n_sims=n_sims)
    if test.n_runs == 0:
        raise MissingData(test.verdict())
    values = np.array(sorted(test.null_distribution))
    counts = np.array([test.null_distribution[v] for v in values])
    obs = test.observed["in_groups"]
    fig = go.Figure(go.Bar(x=values, y=counts / counts.sum(), name="Poisson null", marker_color=OTHER_COLOR,
                           hovertemplate="%{x} formations in groups: %{y:.3f}<extra></extra>"))
    fig.add_vline(x=obs, line=dict(color=TEST, width=2),
                  annotation_text=f"observed {obs} of {test.observed['formations']}", annotation_position="top")
    fig.update_xaxes(title=f"formations in a pair or triple (window {test.window:g} steps), summed over "
                           f"{test.n_runs} runs")
    fig.update_yaxes(title="share of simulations")
    return _layout(fig, f"Coincidence test: p = {test.p_value:.3g}; {test.verdict().split(' (')[0]}", height=380)

