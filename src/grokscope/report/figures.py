"""The generic report figures (loss curves, comparisons) and the helpers every figure module uses.

One function per figure, for notebooks as much as for the HTML report; the Fourier figures are in
`fourier_figures`, and `sections` lists which figures the report shows for which analysis.

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

from grokscope.analysis.phases import grokking_step
from grokscope.config import ConfigError, RunConfig, flatten_dict
from grokscope.report.data import MissingData, RunData, load_run_data

TRAIN, TEST = "#1f77b4", "#d62728"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]
KEY_COLOR, OTHER_COLOR = "#d62728", "#9aa5b1"
# Phase bands, in the order of the phase rule (grokscope.analysis.phases, seed 004's stages):
# [0, memorization_end], then up to circuit_formation_end, generalization_end and cleanup_end.
# A boundary that is absent (not reached, or a summary written before it existed) is skipped.
PHASES = [("memorisation", "memorization_end", "rgba(70,130,180,0.13)"),
          ("circuit formation", "circuit_formation_end", "rgba(255,165,0,0.16)"),
          ("generalisation", "generalization_end", "rgba(148,103,189,0.16)"),
          ("clean-up", "cleanup_end", "rgba(46,139,87,0.14)")]
MAX_FRAMES = 40  # checkpoints per animation: smooth enough to watch, small enough to embed
TEMPLATE = "plotly_white"


# --- inputs --------------------------------------------------------------------------------------

def _data(src: Any) -> RunData:
    return load_run_data(src)


def _frame(src: Any, source: str, analysis: str | None = None) -> tuple[pd.DataFrame, RunData | None]:
    """(DataFrame, RunData or None): a DataFrame passed directly, else the run's `source`
    (metrics or the run-level progress; with `analysis`, that analysis's table)."""
    if isinstance(src, pd.DataFrame):
        return src, None
    data = _data(src)
    return (data.need(source) if analysis is None else data.table(analysis, source)), data


def _tensor(src: Any, name: str, analysis: str) -> tuple[np.ndarray, RunData | None]:
    """(array, RunData or None): an array passed directly, else tensor `name` of the run's analysis."""
    if isinstance(src, (np.ndarray, list)) or hasattr(src, "numpy"):
        return np.asarray(src), None
    data = _data(src)
    return np.asarray(data.tensor(analysis, name)), data


def _f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _positive_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with step > 0: the curves use a log step axis, where step 0 has no place."""
    return df[df["step"] > 0].sort_values("step")


def _shade_phases(fig: go.Figure, phases: dict | None, x_min: float, n_axes: int = 1) -> None:
    """Shade the phase bands on every subplot (the label on the first only)."""
    if not phases:
        return
    start = x_min
    for i, (label, key, color) in enumerate(PHASES):
        end = phases.get(key)
        if end is None:
            continue
        end = max(float(end), start)
        for a in range(n_axes):
            suffix = "" if a == 0 else str(a + 1)
            fig.add_shape(type="rect", xref=f"x{suffix}", yref=f"y{suffix} domain", x0=start, x1=end, y0=0, y1=1,
                          fillcolor=color, line_width=0, layer="below")
        # one height per phase: short early phases sit side by side on a linear axis, and stacked labels stay legible
        _step_annotation(fig, (start + end) / 2, np.sqrt(start * end), y=0.99 - 0.07 * i, yanchor="top", text=label,
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
        _step_annotation(fig, x, x, y=0.02, text=text, xanchor="left", font=dict(size=10, color="#444"))


def _step_annotation(fig: go.Figure, x_linear: float, x_log: float, **kw: Any) -> None:
    """A label at a step on the first x axis; it remembers where it sits on a linear and on a log
    axis (annotations on log axes take log10 coordinates), so `_step_axis` can move it."""
    fig.add_annotation(xref="x", yref="y domain", x=x_linear, showarrow=False,
                       name=f"{STEP_LABEL}{x_linear}:{np.log10(max(x_log, 1e-12))}", **kw)


STEP_LABEL = "step-label:"


def _step_axis(fig: go.Figure, n_axes: int, first: float, last: float, default: str = "linear") -> None:
    """Every x axis a step axis that ends at the run's last step, with a linear / log toggle.

    Linear by default: the late phases of grokking are where the story is, and a log axis
    squeezes them against the right edge. The toggle moves the step labels with the axis type."""
    first = max(float(first), 1.0)

    def relayout(kind: str) -> dict:
        rng = [0, last] if kind == "linear" else [np.log10(first), np.log10(max(last, first * 1.01))]
        args: dict[str, Any] = {}
        for a in range(n_axes):
            key = "xaxis" if a == 0 else f"xaxis{a + 1}"
            args[f"{key}.type"], args[f"{key}.range"] = kind, rng
            args[f"{key}.dtick"] = 1 if kind == "log" else None  # log: label the decades only
        for i, ann in enumerate(fig.layout.annotations):
            if (ann.name or "").startswith(STEP_LABEL):
                lin, log = ann.name[len(STEP_LABEL):].split(":")
                args[f"annotations[{i}].x"] = float(lin if kind == "linear" else log)
        return args

    fig.update_layout(relayout(default))
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="left", x=1.0, y=1.13, xanchor="right", yanchor="bottom", showactive=True,
        active=0 if default == "linear" else 1, pad=dict(r=0, t=0), font=dict(size=11),
        buttons=[dict(label="linear steps", method="relayout", args=[relayout("linear")]),
                 dict(label="log steps", method="relayout", args=[relayout("log")])])])


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


# --- curves --------------------------------------------------------------------------------------

def lr_events(config: dict) -> list[tuple[int, float]]:
    """(at_step, factor) of each `lr_multiplier` intervention in a run's config dict."""
    return [(int(e.get("at_step", 0)), float(e.get("factor", 1.0))) for e in config.get("interventions") or []
            if e.get("kind") == "lr_multiplier"]


def spikes(data: RunData) -> list[dict]:
    """The loss spikes the numerics analysis found ([] when the run was not analysed)."""
    a = data.analyses.get("numerics")
    return list((a.summary or {}).get("spikes") or []) if a is not None else []


def mark_events(fig: go.Figure, data: RunData, n_axes: int = 2) -> None:
    """LR events as dotted vertical lines (an event at step 0 as a note in the legend), and each loss
    spike's peak as a cross on the train loss (the first axes)."""
    for at, factor in lr_events(data.config):
        if at <= 0:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"lr ×{factor:g} from the start",
                                     line=dict(color="#9467bd", dash="dot")))
            continue
        for a in range(n_axes):
            suffix = "" if a == 0 else str(a + 1)
            fig.add_shape(type="line", xref=f"x{suffix}", yref=f"y{suffix} domain", x0=at, x1=at, y0=0, y1=1,
                          line=dict(color="#9467bd", width=1, dash="dot"))
        _step_annotation(fig, at, at, y=0.95, text=f"lr ×{factor:g}", xanchor="left", font=dict(size=10, color="#9467bd"))
    found = spikes(data)
    m = data.metrics
    if found and m is not None and "train_loss" in m:
        loss = m.set_index("step")["train_loss"]
        peaks = [s["peak"] for s in found if s["peak"] in loss.index]
        fig.add_trace(go.Scatter(x=peaks, y=_f32(loss.loc[peaks].to_numpy()), mode="markers", name=f"loss spikes ({len(found)})",
                                 marker=dict(symbol="x", size=10, color="#ff7f0e", line=dict(width=2)),
                                 hovertemplate="spike at step %{x}<extra></extra>"), row=1, col=1)


def loss_curves(src: Any, phases: dict | None = None, grokking_step: int | None = None) -> go.Figure:
    """Train and test loss (log loss) and accuracy over steps, with the phases shaded, a marker at
    the grokking step, the LR events and the loss spikes (`mark_events`); the step axis ends at the
    last logged step and toggles between linear and log.

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
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # decades only
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    _layout(fig, "Loss and accuracy")
    _shade_phases(fig, phases, float(step[0]), n_axes=2)
    _vline(fig, grokking_step, 2, f"grokking (step {grokking_step})" if grokking_step else None)
    if data is not None:
        mark_events(fig, data)
    _step_axis(fig, 2, step[0], step[-1])
    return fig


def component_curves(src: Any) -> go.Figure:
    """Test loss (log) and accuracy of each loss component (output digit, skip trigram, op) over steps,
    the overall test loss in grey, and each component's detected phase change (its steepest fall,
    from the analysis summary's component_changes) as a marker on its curve.

    src: a run or its metrics DataFrame with test_loss/<component> and test_acc/<component> columns.
    """
    from grokscope.analysis.phases import logged_components

    metrics, data = _frame(src, "metrics")
    names = logged_components(metrics)
    if not names:
        raise MissingData("this task's loss has no components")
    m = _positive_steps(metrics)
    if m.empty:
        raise MissingData("no logged steps yet")
    changes = ((data.summary or {}).get("component_changes") or {}) if data is not None else {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test loss per component", "test accuracy per component"),
                        horizontal_spacing=0.08)
    step = m["step"].to_numpy(np.int64)
    fig.add_trace(go.Scatter(x=step, y=_f32(m["test_loss"]), name="test loss (all)", mode="lines",
                             line=dict(color="#9aa5b1", width=3)), row=1, col=1)
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=step, y=_f32(m[f"test_loss/{name}"]), name=name, mode="lines", line=dict(color=color),
                                 legendgroup=name), row=1, col=1)
        if f"test_acc/{name}" in m:
            fig.add_trace(go.Scatter(x=step, y=_f32(m[f"test_acc/{name}"]), name=name, mode="lines", line=dict(color=color),
                                     legendgroup=name, showlegend=False), row=1, col=2)
        at = (changes.get(name) or {}).get("steepest")
        if at is not None:
            y = float(m.loc[m["step"] >= at, f"test_loss/{name}"].iloc[0])
            fig.add_trace(go.Scatter(x=[at], y=[y], mode="markers", marker=dict(color=color, size=10, symbol="x"),
                                     name=f"{name}: phase change at {at}", legendgroup=name, showlegend=False,
                                     hovertemplate=f"{html.escape(name)}: phase change, steepest at step {at}<extra></extra>"),
                          row=1, col=1)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    _layout(fig, "Loss per component")
    _step_axis(fig, 2, step[0], step[-1])
    return fig


def head_scores(src: Any) -> go.Figure:
    """Each attention head's induction score (left) and previous-token score (right) over training
    (grokscope.analysis.heads), with the threshold that names a head dashed.

    src: a run or the heads analysis's progress table.
    """
    table, data = _frame(src, "progress", "heads")
    threshold = float(((data.analyses["heads"].summary or {}).get("threshold") or 0.5) if data is not None else 0.5)
    heads = [c.split(".", 1)[1] for c in table.columns if c.startswith("induction_score.")]
    if not heads or table.empty:
        raise MissingData("no head scores")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("induction score", "previous-token score"), horizontal_spacing=0.08)
    step = table["step"].to_numpy(np.int64)
    for i, head in enumerate(heads):
        color = PALETTE[i % len(PALETTE)]
        for col, kind in ((1, "induction_score"), (2, "prev_token_score")):
            fig.add_trace(go.Scatter(x=step, y=_f32(table[f"{kind}.{head}"]), name=head, mode="lines+markers",
                                     line=dict(color=color), legendgroup=head, showlegend=col == 1), row=1, col=col)
    for col in (1, 2):
        fig.add_hline(y=threshold, line=dict(dash="dash", color="#7f7f7f"), row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02])
    _layout(fig, "Attention-head scores")
    _step_axis(fig, 2, step[0], step[-1])
    return fig


# --- several runs --------------------------------------------------------------------------------

def compare_curves(runs: Sequence[Any]) -> go.Figure:
    """Train (dotted) and test (solid) loss and test accuracy of several runs, overlaid."""
    datas = [_data(r) for r in runs]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "test accuracy"), horizontal_spacing=0.08)
    shown, first, last = 0, float("inf"), 0.0
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
        grok = grokking_step(d.metrics)
        if grok is not None:  # each run's grokking step, in its colour, on both panels
            for a in ("", "2"):
                fig.add_shape(type="line", xref=f"x{a}", yref=f"y{a} domain", x0=grok, x1=grok, y0=0, y1=1,
                              line=dict(color=color, width=1, dash="dash"))
        first, last = min(first, float(step[0])), max(last, float(step[-1]))
        shown += 1
    if not shown:
        raise MissingData("none of the runs has metrics")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # decades only
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    _layout(fig, "Loss (test solid, train dotted) and test accuracy; dashed: each run's grokking step", height=440)
    _step_axis(fig, 2, first, last)
    return fig


def task_label(task: dict) -> str:
    """The task family's own title (its config's optional `title()`, e.g. "add mod 113"), else its name and keys."""
    return _family_title("task", task)


def model_label(model: dict) -> str:
    """The model family's own title (its config's optional `title()`), else its name and keys."""
    return _family_title("model", model)


def _family_title(section: str, values: dict) -> str:
    try:
        family = getattr(RunConfig.from_dict({section: values}), section)
    except ConfigError:  # a family not registered in this process
        family = None
    if hasattr(family, "title"):
        return family.title()
    keys = ", ".join(f"{k} {v}" for k, v in values.items() if k != "name")
    return f"{values.get('name')} ({keys})" if keys else str(values.get("name"))


def headline_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run with the headline numbers (NaN / None where a run has no analysis), and a
    column for every config key whose value differs between the runs (what was swept)."""
    datas = [_data(r) for r in runs]
    flats = [flatten_dict(d.config) for d in datas]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    varied = [k for k in keys if k != "name" and len({repr(f.get(k)) for f in flats}) > 1]
    rows = []
    for d, flat in zip(datas, flats):
        s = d.summary or {}
        fin = s.get("final") or {}
        cfg = d.config
        last = d.metrics.iloc[-1] if d.metrics is not None and len(d.metrics) else None
        rows.append({
            "run": d.name,
            "task": task_label(cfg.get("task", {})),
            "frac_train": cfg.get("task", {}).get("frac_train"),
            "weight_decay": cfg.get("optim", {}).get("weight_decay"),
            "seed": cfg.get("train", {}).get("seed"),
            **{k: flat.get(k) for k in varied if k not in ("task.frac_train", "optim.weight_decay", "train.seed")},
            "final_step": int(last["step"]) if last is not None else None,
            "grokking_step": s.get("grokking_step"),
            "key_frequencies": ", ".join(str(k) for k in s["key_frequencies"]) if "key_frequencies" in s else None,
            "train_loss": float(last["train_loss"]) if last is not None else None,
            "test_loss": float(last["test_loss"]) if last is not None else None,
            "test_acc": float(last["test_acc"]) if last is not None else None,
            "restricted_loss_test": fin.get("restricted_loss_test"),
            "excluded_loss_train": fin.get("excluded_loss_train"),
            "frac_neurons_single_frequency": s.get("frac_neurons_single_frequency"),
            "logit_fit_variance_explained": s.get("logit_fit_variance_explained"),
        })
    return pd.DataFrame(rows)
