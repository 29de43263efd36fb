"""The Fourier analysis's figures (analysis/fourier/): progress measures, Fourier norms, neuron
clusters, the logit spectrum, the embedding's circles, attention and neuron activations.

Every function takes a run (a path, a `grokscope.run.Run`, or a `RunData`) or the plain data it
plots, and returns a plotly Figure; absent data raises `MissingData` with a note for the reader.

    from grokscope.report import fourier_figures
    fig = fourier_figures.embedding_circles("runs/nanda2023")
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.analysis import subsample_steps
from grokscope.report import figures as G
from grokscope.report.data import MissingData, RunData
from grokscope.report.figures import (
    KEY_COLOR, MAX_FRAMES, OTHER_COLOR, PALETTE, TEST, TRAIN, _animate, _data, _f32, _grid, _hide_unused, _layout,
    _positive_steps, _shade_phases,
)

ANALYSIS = "fourier"


def _frame(src: Any, source: str) -> tuple[pd.DataFrame, RunData | None]:
    """The run-level progress table, or one of the Fourier analysis's tables."""
    return G._frame(src, source, None if source == "progress" else ANALYSIS)


def _tensor(src: Any, name: str) -> tuple[np.ndarray, RunData | None]:
    return G._tensor(src, name, ANALYSIS)


def _keys(data: RunData) -> list[int]:
    return [int(k) for k in (data.summary or {}).get("key_frequencies") or []]


def _is_mul_group(data: RunData) -> bool:
    """True when grids are laid out by discrete log (mul / div), not by token."""
    group = (data.summary or {}).get("group") or {}
    return group.get("generator") is not None


def _axis_names(data: RunData | None) -> tuple[str, str]:
    """Axis labels of (x, y) grids: tokens, or discrete logs for mul / div."""
    if data is not None and _is_mul_group(data):
        return "a = log_g x", "b = log_g y"
    return "x", "y"


def progress_measures(src: Any, phases: dict | None = None, key_frequencies: Sequence[int] | None = None) -> go.Figure:
    """The progress measures over checkpoints: restricted and excluded loss, excluded loss per key
    frequency, Gini coefficients and the single-frequency share, weight norms. src: a run or its
    progress DataFrame (analysis/progress.parquet)."""
    prog, data = _frame(src, "progress")
    if data is not None:
        phases = phases if phases is not None else data.phases
        key_frequencies = key_frequencies if key_frequencies is not None else _keys(data)
    pr = _positive_steps(prog)
    if pr.empty:
        raise MissingData("no analysed checkpoints after step 0")
    step = pr["step"].to_numpy(np.int64)
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.16, horizontal_spacing=0.08,
                        subplot_titles=("restricted and excluded loss", "excluded loss per key frequency (train)",
                                        "sparsity in the Fourier basis", "squared weight norm"))

    def line(col: str, name: str, r: int, c: int, **style: Any) -> None:
        if col in pr and pr[col].notna().any():
            fig.add_trace(go.Scatter(x=step, y=_f32(pr[col]), name=name, mode="lines", line=style), row=r, col=c)

    line("train_loss", "train loss", 1, 1, color=TRAIN)
    line("test_loss", "test loss", 1, 1, color=TEST)
    line("restricted_loss_train", "restricted loss (train)", 1, 1, color="#2ca02c", dash="dash")
    line("restricted_loss_test", "restricted loss (test)", 1, 1, color="#98df8a", dash="dash")
    line("excluded_loss_train", "excluded loss (train)", 1, 1, color="#9467bd", dash="dot")
    for i, k in enumerate(key_frequencies or []):
        line(f"excluded_loss_train_k{k}", f"excluded k={k}", 1, 2, color=PALETTE[(i + 2) % len(PALETTE)])
    if not key_frequencies:
        fig.add_annotation(text="no key frequencies", xref="x2 domain", yref="y2 domain", x=0.5, y=0.5, showarrow=False)
    line("gini_W_E", "Gini of W_E Fourier norms", 2, 1, color="#8c564b")
    line("gini_W_L", "Gini of W_L Fourier norms", 2, 1, color="#e377c2")
    line("frac_neurons_single_frequency", "share of single-frequency neurons", 2, 1, color="#17becf")
    line("attn_periodicity", "attention periodicity", 2, 1, color="#bcbd22", dash="dot")
    line("sq_norm_total", "total", 2, 2, color="#333")
    parts = [c for c in pr.columns if c.startswith("sq_norm_") and c != "sq_norm_total"]
    for i, col in enumerate(sorted(parts, key=lambda c: -float(pr[c].iloc[-1]))):
        fig.add_trace(go.Scatter(x=step, y=_f32(pr[col]), name=col[len("sq_norm_"):], mode="lines",
                                 line=dict(width=1, color=PALETTE[i % len(PALETTE)]), visible="legendonly"),
                      row=2, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # decades only
    fig.update_yaxes(type="log", dtick=1, row=1, col=2)  # decades only
    _layout(fig, "Progress measures", height=680)
    _shade_phases(fig, phases, float(step[0]), n_axes=4)
    G._step_axis(fig, 4, step[0], step[-1])
    return fig


# --- Fourier structure of the embedding ---------------------------------------------------------

def _embed_norms(src: Any) -> tuple[pd.DataFrame, RunData | None]:
    df, data = _frame(src, "embed_fourier")
    if df.empty:
        raise MissingData("embed_fourier.parquet is empty")
    return df, data


def _freq_colors(freqs: np.ndarray, keys: Sequence[int]) -> list[str]:
    ks = set(int(k) for k in keys)
    return [KEY_COLOR if int(f) in ks else OTHER_COLOR for f in freqs]


def embed_fourier_final(src: Any, key_frequencies: Sequence[int] | None = None) -> go.Figure:
    """Norm of each Fourier frequency of W_E at the last analysed checkpoint; key frequencies in red.
    src: a run or the long DataFrame [step, freq, norm] (analysis/embed_fourier.parquet)."""
    df, data = _embed_norms(src)
    if key_frequencies is None:
        key_frequencies = _keys(data) if data is not None else []
    last = df[df["step"] == df["step"].max()].sort_values("freq")
    freqs = last["freq"].to_numpy(np.int64)
    fig = go.Figure(go.Bar(x=freqs, y=_f32(last["norm"]), marker_color=_freq_colors(freqs, key_frequencies),
                           hovertemplate="k=%{x}: %{y:.3f}<extra></extra>", name="norm"))
    fig.update_xaxes(title_text="frequency k (0 = constant)")
    fig.update_yaxes(title_text="norm of W_E's component")
    return _layout(fig, f"Fourier norms of W_E at step {int(last['step'].iloc[0])}", height=380)


def embed_fourier_animation(src: Any, key_frequencies: Sequence[int] | None = None,
                            max_frames: int = MAX_FRAMES) -> go.Figure:
    """The W_E Fourier norms over training as an animation (play button and step slider):
    sparsity in a few key frequencies emerges during circuit formation."""
    df, data = _embed_norms(src)
    if key_frequencies is None:
        key_frequencies = _keys(data) if data is not None else []
    steps = subsample_steps(df["step"].unique(), max_frames)
    by_step = {s: g.sort_values("freq") for s, g in df[df["step"].isin(steps)].groupby("step")}
    freqs = by_step[steps[-1]]["freq"].to_numpy(np.int64)
    colors = _freq_colors(freqs, key_frequencies)

    def bar(s: int) -> go.Bar:
        return go.Bar(x=freqs, y=_f32(by_step[s]["norm"]), marker_color=colors, name="norm",
                      hovertemplate="k=%{x}: %{y:.3f}<extra></extra>")

    fig = go.Figure(bar(steps[-1]))
    frames = [go.Frame(data=[bar(s)], name=str(s)) for s in steps]
    ymax = float(df["norm"].max()) * 1.05
    fig.update_xaxes(title_text="frequency k (0 = constant)")
    fig.update_yaxes(title_text="norm", range=[0, ymax])
    _layout(fig, "Fourier norms of W_E over training", height=440, margin=dict(l=60, r=20, t=60, b=110))
    return _animate(fig, frames, steps)


# --- neurons and logits --------------------------------------------------------------------------

def neuron_clusters(src: Any, clusters: dict | None = None) -> go.Figure:
    """Left: MLP neurons per frequency cluster. Right: each neuron's share of variance per frequency
    (rows: neurons grouped by cluster; column 0: variance outside any single-frequency block).

    src: a run, or the [d_mlp, n_freqs + 1] share array (final.safetensors: neuron_freq_frac).
    """
    share, data = _tensor(src, "neuron_freq_frac")
    if clusters is None and data is not None and data.summary:
        clusters = data.summary.get("neuron_clusters")
    if share.ndim != 2 or share.size == 0:
        raise MissingData("no MLP neurons to cluster (attention-only model?)")
    dominant = share[:, 1:].argmax(1) + 1
    order = np.lexsort((-share[np.arange(len(share)), dominant], dominant))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65], horizontal_spacing=0.1,
                        subplot_titles=("neurons per cluster", "variance share per frequency"))
    if clusters:
        names = sorted((k for k in clusters if k != "unclustered"), key=lambda k: int(k)) + \
            (["unclustered"] if "unclustered" in clusters else [])
        labels = [f"k={k}" if k != "unclustered" else k for k in names]
        fig.add_trace(go.Bar(x=labels, y=[int(clusters[k]) for k in names], name="neurons", showlegend=False,
                             marker_color=[KEY_COLOR if k != "unclustered" else OTHER_COLOR for k in names]),
                      row=1, col=1)
    else:
        fig.add_annotation(text="no cluster counts in summary.json", xref="x domain", yref="y domain", x=0.5, y=0.5,
                           showarrow=False)
    fig.add_trace(go.Heatmap(z=_f32(share[order]).round(3), x=np.arange(share.shape[1]), colorscale="Viridis",
                             zmin=0, zmax=1, colorbar=dict(title="share", len=0.8),
                             hovertemplate="k=%{x}, neuron #%{y}: %{z:.2f}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="frequency k", row=1, col=2)
    fig.update_yaxes(title_text="neurons (sorted by cluster)", autorange="reversed", row=1, col=2)
    return _layout(fig, "MLP neurons by frequency", height=460)


def logit_spectrum(src: Any, key_frequencies: Sequence[int] | None = None) -> go.Figure:
    """Norm of the logits' 2D Fourier coefficients over (x, y): a trained network puts its weight on
    a few (cos k, cos k) / (sin k, sin k) terms of the key frequencies.

    src: a run or the [n, n] array (final.safetensors: logits_fourier_norm).
    """
    from grokscope.analysis.modular.fourier import row_labels

    z, data = _tensor(src, "logits_fourier_norm")
    if key_frequencies is None:
        key_frequencies = _keys(data) if data is not None else []
    n = z.shape[0]
    labels = row_labels(n)
    ks = list(key_frequencies) or list(range(1, n // 2 + 1, max(1, n // 20)))
    tickvals = [0] + [2 * k - 1 for k in ks if 2 * k - 1 < n]
    ticktext = [labels[v] for v in tickvals]
    fig = go.Figure(go.Heatmap(z=_f32(z), colorscale="Blues", colorbar=dict(title="norm"),
                               hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>"))
    ax = dict(tickmode="array", tickvals=tickvals, ticktext=ticktext)
    fig.update_xaxes(title_text="basis function of y", constrain="domain", tickangle=-45, **ax)
    fig.update_yaxes(title_text="basis function of x", autorange="reversed", scaleanchor="x", constrain="domain", **ax)
    return _layout(fig, "2D Fourier spectrum of the logits (norm over outputs)", height=560)


# --- the embedding's circles ---------------------------------------------------------------------

def embedding_circles(src: Any, max_frames: int = MAX_FRAMES, group_tokens: np.ndarray | None = None) -> go.Figure:
    """Each token's embedding projected on the cos_k / sin_k directions of each key frequency k,
    animated over training: the tokens settle on a circle in the order k * x mod p.

    src: a run or the long DataFrame [step, freq, token, cos, sin] (analysis/circles.parquet).
    group_tokens: token at each group position (mul / div); defaults to the run's.
    """
    df, data = _frame(src, "circles")
    if df.empty:
        raise MissingData("no key frequencies, so no embedding circles (the run has no Fourier circuit)")
    if group_tokens is None and data is not None and "group_tokens" in data.tensors(ANALYSIS):
        group_tokens = np.asarray(data.tensors(ANALYSIS)["group_tokens"])
    freqs = sorted(int(k) for k in df["freq"].unique())
    steps = subsample_steps(df["step"].unique(), max_frames)
    df = df[df["step"].isin(steps)]
    tokens = np.sort(df["token"].unique())
    if group_tokens is not None:
        n = len(group_tokens)
        pos_of = {int(t): a for a, t in enumerate(group_tokens)}
    else:
        n = int(tokens.max()) + 1
        pos_of = {int(t): int(t) for t in tokens}
    pos = np.array([pos_of.get(int(t), -1) for t in tokens])
    rows, cols = _grid(len(freqs), 4)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"k = {k}" for k in freqs],
                        horizontal_spacing=0.05, vertical_spacing=0.12)
    lim = float(np.abs(df[["cos", "sin"]].to_numpy()).max()) * 1.1 or 1.0
    grouped = {key: g.set_index("token").reindex(tokens) for key, g in df.groupby(["step", "freq"])}

    rings = {k: [i for i in np.argsort((k * pos) % n, kind="stable") if pos[i] >= 0] for k in freqs}

    def traces(s: int, style: bool) -> list[go.Scatter]:
        """Two traces per frequency (ring line, token markers); frames carry only x and y (style=False)."""
        out = []
        for k in freqs:
            g = grouped.get((s, k))
            xy = (g[["cos", "sin"]].to_numpy(np.float32) if g is not None
                  else np.full((len(tokens), 2), np.nan, np.float32))
            ring = rings[k] + rings[k][:1]
            line, dots = go.Scatter(x=xy[ring, 0], y=xy[ring, 1]), go.Scatter(x=xy[:, 0], y=xy[:, 1])
            if style:
                line.update(mode="lines", line=dict(color="#c0c0c0", width=1), hoverinfo="skip", showlegend=False)
                dots.update(mode="markers", showlegend=False,
                            marker=dict(size=6, color=np.where(pos >= 0, pos, 0).astype(np.int32),
                                        colorscale="Twilight", cmin=0, cmax=max(n - 1, 1)),
                            customdata=tokens.astype(np.int32), hovertemplate="token %{customdata}<extra></extra>")
            out += [line, dots]
        return out

    for i, tr in enumerate(traces(steps[-1], style=True)):
        j = i // 2
        fig.add_trace(tr, row=j // cols + 1, col=j % cols + 1)
    frames = [go.Frame(data=traces(s, style=False), name=str(s)) for s in steps]
    fig.update_xaxes(range=[-lim, lim], showticklabels=False, zeroline=True)
    fig.update_yaxes(range=[-lim, lim], showticklabels=False, zeroline=True)
    for a in range(len(freqs)):
        suffix = "" if a == 0 else str(a + 1)
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", scaleratio=1)
    _hide_unused(fig, len(freqs), rows, cols)
    _layout(fig, "The embedding's circles in each key-frequency plane", height=260 * rows + 170,
            margin=dict(l=30, r=20, t=70, b=110))
    return _animate(fig, frames, steps)


# --- attention and neurons over (x, y) -----------------------------------------------------------

def _grid_heatmaps(arr: np.ndarray, titles: list[str], title: str, data: RunData | None, zmin: float | None,
                   zmax: float | None, colorscale: str) -> go.Figure:
    """Heatmaps over (x, y), 4 per row, square; one colour bar only when the scale is shared (zmin, zmax)."""
    rows, cols = _grid(len(arr), 4)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.1)
    xname, yname = _axis_names(data)
    for i, z in enumerate(arr):
        fig.add_trace(go.Heatmap(z=_f32(z), colorscale=colorscale, zmin=zmin, zmax=zmax,
                                 showscale=(i == 0 and zmax is not None),
                                 hovertemplate=f"{xname}=%{{y}}, {yname}=%{{x}}: %{{z:.3g}}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    for a in range(len(arr)):
        suffix = "" if a == 0 else str(a + 1)
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", constrain="domain")
        fig.layout[f"xaxis{suffix}"].update(constrain="domain")
    _hide_unused(fig, len(arr), rows, cols)
    fig.update_xaxes(title_text=yname, row=rows, col=1)
    fig.update_yaxes(title_text=xname, row=rows, col=1)
    return _layout(fig, title, height=250 * rows + 110)


def attention_patterns(src: Any) -> go.Figure:
    """Attention from the '=' position to x, per head, over all inputs (x, y): periodic in x and y
    for heads that carry key frequencies. src: a run or [n_heads, n, n] (final.safetensors: attn_pattern)."""
    arr, data = _tensor(src, "attn_pattern")
    if arr.ndim != 3 or len(arr) == 0:
        raise MissingData("no attention pattern (MLP-only model?)")
    return _grid_heatmaps(arr, [f"head {h}" for h in range(len(arr))], "Attention from '=' to x", data, 0.0, 1.0,
                          "Viridis")


def neuron_activations(src: Any, index: Sequence[int] | None = None, clusters: np.ndarray | None = None,
                       max_neurons: int = 8) -> go.Figure:
    """A few MLP neurons' activations (at '=') over all inputs (x, y); a clustered neuron looks like a
    product of cos / sin waves of its frequency. src: a run or [n_show, n, n] (neuron_acts)."""
    arr, data = _tensor(src, "neuron_acts")
    if data is not None:
        index = index if index is not None else data.tensors(ANALYSIS).get("neuron_acts_index")
        clusters = clusters if clusters is not None else data.tensors(ANALYSIS).get("neuron_cluster")
    if arr.ndim != 3 or len(arr) == 0:
        raise MissingData("no neuron activations stored")
    arr = arr[:max_neurons]
    idx = list(range(len(arr))) if index is None else [int(i) for i in np.asarray(index)[: len(arr)]]
    titles = []
    for i in idx:
        k = int(clusters[i]) if clusters is not None and i < len(clusters) else 0
        titles.append(f"neuron {i}" + (f" (k={k})" if k > 0 else ""))
    return _grid_heatmaps(arr, titles, "MLP neuron activations over (x, y), each on its own colour scale", data,
                          None, None, "Viridis")


def compare_progress(runs: Sequence[Any]) -> go.Figure:
    """Excluded loss, Gini of W_E and the total weight norm of several runs, overlaid."""
    datas = [_data(r) for r in runs]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("excluded loss (train)", "Gini of W_E Fourier norms",
                                                        "squared weight norm"), horizontal_spacing=0.07)
    shown, first, last = 0, float("inf"), 0.0
    for i, d in enumerate(datas):
        if d.progress is None:
            continue
        pr = _positive_steps(d.progress)
        step = pr["step"].to_numpy(np.int64)
        if len(step):
            first, last = min(first, float(step[0])), max(last, float(step[-1]))
        for c, col in enumerate(["excluded_loss_train", "gini_W_E", "sq_norm_total"]):
            if col in pr:
                fig.add_trace(go.Scatter(x=step, y=_f32(pr[col]), name=f"{i + 1}: {html.escape(d.name)}",
                                         legendgroup=str(i), showlegend=(c == 0), mode="lines",
                                         line=dict(color=PALETTE[i % len(PALETTE)])), row=1, col=c + 1)
        shown += 1
    if not shown:
        raise MissingData("none of the runs has been analysed (run `grokscope analyze RUN`)")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # decades only
    _layout(fig, "Progress measures", height=400)
    G._step_axis(fig, 3, first if last else 1, last or 1)
    return fig


