"""One function per report figure, for notebooks as much as for the HTML report.

Every function takes a run (a path, a `grokscope.run.Run`, or a `RunData` from `load_run_data`)
or the plain data it plots (a DataFrame or an array), and returns a plotly Figure; nothing is
shown or written. When the data a figure needs is absent (no analysis yet, a task without key
frequencies) the function raises `MissingData` whose message is a note fit for a reader.

Arrays are stored as float32 (plotly serialises numpy arrays as compact typed arrays), and
animations use at most `max_frames` checkpoints, so a report stays small.

    from grokscope.report import figures
    fig = figures.loss_curves("runs/nanda2023")      # go.Figure; fig.show() in a notebook
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.report.data import MissingData, RunData, load_run_data

TRAIN, TEST = "#1f77b4", "#d62728"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]
KEY_COLOR, OTHER_COLOR = "#d62728", "#9aa5b1"
# Phase bands, in the order of the phase rule (docs/analysis.md): [0, memorization_end],
# (memorization_end, circuit_formation_end], (circuit_formation_end, cleanup_end].
PHASES = [("memorisation", "memorization_end", "rgba(70,130,180,0.13)"),
          ("circuit formation", "circuit_formation_end", "rgba(255,165,0,0.16)"),
          ("clean-up", "cleanup_end", "rgba(46,139,87,0.14)")]
MAX_FRAMES = 40  # checkpoints per animation: smooth enough to watch, small enough to embed
TEMPLATE = "plotly_white"


# --- inputs --------------------------------------------------------------------------------------

def _data(src: Any) -> RunData:
    return load_run_data(src)


def _frame(src: Any, source: str) -> tuple[pd.DataFrame, RunData | None]:
    """(DataFrame, RunData or None): a DataFrame passed directly, else the run's `source`."""
    if isinstance(src, pd.DataFrame):
        return src, None
    data = _data(src)
    return data.need(source), data


def _tensor(src: Any, name: str) -> tuple[np.ndarray, RunData | None]:
    if isinstance(src, (np.ndarray, list)) or hasattr(src, "numpy"):
        return np.asarray(src), None
    data = _data(src)
    return np.asarray(data.need_tensor(name)), data


def _f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _positive_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with step > 0: the curves use a log step axis, where step 0 has no place."""
    return df[df["step"] > 0].sort_values("step")


def subsample_steps(steps: Sequence[int], max_frames: int = MAX_FRAMES) -> list[int]:
    """At most max_frames of the steps, evenly spaced by index (checkpoints are already log-spaced
    early), always keeping the first and the last."""
    steps = sorted(set(int(s) for s in steps))
    if len(steps) <= max_frames:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, max_frames)).astype(int))
    return [steps[i] for i in idx]


def _shade_phases(fig: go.Figure, phases: dict | None, x_min: float, n_axes: int = 1) -> None:
    """Shade the phase bands on every subplot (the label on the first only)."""
    if not phases:
        return
    start = x_min
    for i, (label, key, color) in enumerate(PHASES):
        end = phases.get(key)
        if end is None:
            break
        end = max(float(end), x_min)
        for a in range(n_axes):
            suffix = "" if a == 0 else str(a + 1)
            fig.add_shape(type="rect", xref=f"x{suffix}", yref=f"y{suffix} domain", x0=start, x1=end, y0=0, y1=1,
                          fillcolor=color, line_width=0, layer="below")
        fig.add_annotation(xref="x", yref="y domain", x=np.log10(np.sqrt(start * end)) if fig.layout.xaxis.type == "log"
                           else (start + end) / 2, y=0.99, yanchor="top", text=label, showarrow=False,
                           font=dict(size=10, color="#555"))
        start = end


def _vline(fig: go.Figure, x: float | None, n_axes: int, text: str | None = None) -> None:
    if x is None or x <= 0:
        return
    for a in range(n_axes):
        suffix = "" if a == 0 else str(a + 1)
        fig.add_shape(type="line", xref=f"x{suffix}", yref=f"y{suffix} domain", x0=x, x1=x, y0=0, y1=1,
                      line=dict(color="#444", width=1, dash="dash"))
    if text:
        fig.add_annotation(xref="x", yref="y domain", x=np.log10(x) if fig.layout.xaxis.type == "log" else x, y=0.02,
                           text=text, showarrow=False, xanchor="left", font=dict(size=10, color="#444"))


def _animate(fig: go.Figure, frames: list[go.Frame], steps: list[int]) -> go.Figure:
    """Attach frames with a play / pause button and a step slider."""
    fig.frames = frames
    play = dict(frame=dict(duration=250, redraw=True), transition=dict(duration=0), fromcurrent=True, mode="immediate")
    pause = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")
    fig.update_layout(
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.12, xanchor="left", yanchor="top",
                          pad=dict(t=0, r=10), showactive=False,
                          buttons=[dict(label="Play", method="animate", args=[None, play]),
                                   dict(label="Pause", method="animate", args=[[None], pause])])],
        sliders=[dict(active=len(steps) - 1, x=0.12, y=-0.08, len=0.88, xanchor="left", yanchor="top",
                      # tick labels hidden (dozens would overlap); the current step shows above the slider
                      currentvalue=dict(prefix="step ", font=dict(size=12, color="#333")), pad=dict(t=0),
                      font=dict(color="rgba(0,0,0,0)"),
                      steps=[dict(label=str(s), method="animate",
                                  args=[[str(s)], dict(frame=dict(duration=0, redraw=True), mode="immediate",
                                                       transition=dict(duration=0))]) for s in steps])],
    )
    return fig


def _layout(fig: go.Figure, title: str, height: int = 420, **kw: Any) -> go.Figure:
    kw.setdefault("margin", dict(l=60, r=20, t=70, b=50))
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01), height=height, **kw)
    return fig


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _hide_unused(fig: go.Figure, used: int, rows: int, cols: int) -> None:
    """Hide the empty cells at the end of a subplot grid."""
    for a in range(used, rows * cols):
        fig.layout[f"xaxis{a + 1}"].update(visible=False)
        fig.layout[f"yaxis{a + 1}"].update(visible=False)


def _axis_names(data: RunData | None) -> tuple[str, str]:
    """Axis labels of (x, y) grids: tokens, or discrete logs for mul / div."""
    if data is not None and data.is_mul_group:
        return "a = log_g x", "b = log_g y"
    return "x", "y"


# --- curves --------------------------------------------------------------------------------------

def loss_curves(src: Any, phases: dict | None = None, grokking_step: int | None = None) -> go.Figure:
    """Train and test loss (log-log) and accuracy (log step), with the phases shaded.

    src: a run or its metrics DataFrame [step, train_loss, test_loss, train_acc, test_acc].
    phases / grokking_step default to the run's analysis summary when src is a run.
    """
    metrics, data = _frame(src, "metrics")
    if data is not None and data.summary:
        phases = phases if phases is not None else data.phases
        grokking_step = grokking_step if grokking_step is not None else data.summary.get("grokking_step")
    m = _positive_steps(metrics)
    if m.empty:
        raise MissingData("no logged steps yet")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    step = m["step"].to_numpy(np.int64)
    for col, (name, color) in enumerate([("train", TRAIN), ("test", TEST)]):
        if f"{name}_loss" in m:
            fig.add_trace(go.Scatter(x=step, y=_f32(m[f"{name}_loss"]), name=f"{name} loss", mode="lines",
                                     line=dict(color=color), legendgroup=name), row=1, col=1)
        if f"{name}_acc" in m:
            fig.add_trace(go.Scatter(x=step, y=_f32(m[f"{name}_acc"]), name=f"{name} accuracy", mode="lines",
                                     line=dict(color=color, dash="dot"), legendgroup=name), row=1, col=2)
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    _layout(fig, "Loss and accuracy")
    _shade_phases(fig, phases, float(step[0]), n_axes=2)
    _vline(fig, grokking_step, 2, f"grokking (step {grokking_step})" if grokking_step else None)
    return fig


def progress_measures(src: Any, phases: dict | None = None, key_frequencies: Sequence[int] | None = None) -> go.Figure:
    """The progress measures over checkpoints: restricted and excluded loss, excluded loss per key
    frequency, Gini coefficients and the single-frequency share, weight norms. src: a run or its
    progress DataFrame (analysis/progress.parquet)."""
    prog, data = _frame(src, "progress")
    if data is not None:
        phases = phases if phases is not None else data.phases
        key_frequencies = key_frequencies if key_frequencies is not None else data.key_frequencies
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
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    _layout(fig, "Progress measures", height=680)
    _shade_phases(fig, phases, float(step[0]), n_axes=4)
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
        key_frequencies = data.key_frequencies if data is not None else []
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
        key_frequencies = data.key_frequencies if data is not None else []
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
    from grokscope.analysis.fourier import row_labels

    z, data = _tensor(src, "logits_fourier_norm")
    if key_frequencies is None:
        key_frequencies = data.key_frequencies if data is not None else []
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
        raise MissingData("no key frequencies, so no embedding circles")
    if group_tokens is None and data is not None and "group_tokens" in data.final:
        group_tokens = np.asarray(data.final["group_tokens"])
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
        index = index if index is not None else data.final.get("neuron_acts_index")
        clusters = clusters if clusters is not None else data.final.get("neuron_cluster")
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


# --- several runs --------------------------------------------------------------------------------

def compare_curves(runs: Sequence[Any]) -> go.Figure:
    """Train (dotted) and test (solid) loss and test accuracy of several runs, overlaid."""
    datas = [_data(r) for r in runs]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "test accuracy"), horizontal_spacing=0.08)
    shown = 0
    for i, d in enumerate(datas):
        if d.metrics is None:
            continue
        m = _positive_steps(d.metrics)
        step = m["step"].to_numpy(np.int64)
        color = PALETTE[i % len(PALETTE)]
        label = f"{i + 1}: {html.escape(d.name)}"  # plotly reads tags in text; show the name as typed
        fig.add_trace(go.Scatter(x=step, y=_f32(m["test_loss"]), name=label, legendgroup=str(i), mode="lines",
                                 line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=step, y=_f32(m["train_loss"]), name=f"{label} (train)", legendgroup=str(i),
                                 mode="lines", line=dict(color=color, dash="dot", width=1), showlegend=False),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=step, y=_f32(m["test_acc"]), name=label, legendgroup=str(i), mode="lines",
                                 line=dict(color=color), showlegend=False), row=1, col=2)
        shown += 1
    if not shown:
        raise MissingData("none of the runs has metrics")
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    return _layout(fig, "Loss (test solid, train dotted) and test accuracy", height=440)


def compare_progress(runs: Sequence[Any]) -> go.Figure:
    """Excluded loss, Gini of W_E and the total weight norm of several runs, overlaid."""
    datas = [_data(r) for r in runs]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("excluded loss (train)", "Gini of W_E Fourier norms",
                                                        "squared weight norm"), horizontal_spacing=0.07)
    shown = 0
    for i, d in enumerate(datas):
        if d.progress is None:
            continue
        pr = _positive_steps(d.progress)
        step = pr["step"].to_numpy(np.int64)
        for c, col in enumerate(["excluded_loss_train", "gini_W_E", "sq_norm_total"]):
            if col in pr:
                fig.add_trace(go.Scatter(x=step, y=_f32(pr[col]), name=f"{i + 1}: {html.escape(d.name)}",
                                         legendgroup=str(i), showlegend=(c == 0), mode="lines",
                                         line=dict(color=PALETTE[i % len(PALETTE)])), row=1, col=c + 1)
        shown += 1
    if not shown:
        raise MissingData("none of the runs has been analysed (run `grokscope analyze RUN`)")
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(type="log", row=1, col=1)
    return _layout(fig, "Progress measures", height=400)


def headline_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run with the headline numbers (NaN / None where a run has no analysis)."""
    rows = []
    for d in (_data(r) for r in runs):
        s = d.summary or {}
        fin = s.get("final") or {}
        cfg = d.config
        last = d.metrics.iloc[-1] if d.metrics is not None and len(d.metrics) else None
        rows.append({
            "run": d.name,
            "task": f"{cfg.get('task', {}).get('op')} mod {cfg.get('task', {}).get('p')}",
            "frac_train": cfg.get("task", {}).get("frac_train"),
            "weight_decay": cfg.get("optim", {}).get("weight_decay"),
            "seed": cfg.get("train", {}).get("seed"),
            "final_step": int(last["step"]) if last is not None else None,
            "grokking_step": s.get("grokking_step"),
            "key_frequencies": ", ".join(str(k) for k in d.key_frequencies) if d.summary else None,
            "train_loss": float(last["train_loss"]) if last is not None else None,
            "test_loss": float(last["test_loss"]) if last is not None else None,
            "test_acc": float(last["test_acc"]) if last is not None else None,
            "restricted_loss_test": fin.get("restricted_loss_test"),
            "excluded_loss_train": fin.get("excluded_loss_train"),
            "frac_neurons_single_frequency": s.get("frac_neurons_single_frequency"),
            "logit_fit_variance_explained": s.get("logit_fit_variance_explained"),
        })
    return pd.DataFrame(rows)


# The single-run report's figures, in page order: (id, section title, function).
RUN_FIGURES = [
    ("curves", "Loss and accuracy", loss_curves),
    ("progress", "Progress measures", progress_measures),
    ("embed_final", "Fourier norms of the embedding", embed_fourier_final),
    ("embed_anim", "Fourier norms of the embedding over training", embed_fourier_animation),
    ("neurons", "Neuron clusters", neuron_clusters),
    ("logits", "Fourier spectrum of the logits", logit_spectrum),
    ("circles", "The embedding's circles", embedding_circles),
    ("attention", "Attention patterns", attention_patterns),
    ("activations", "Neuron activations", neuron_activations),
]
