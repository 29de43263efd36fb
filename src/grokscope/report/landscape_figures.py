"""Figures of what `grokscope landscape` and `grokscope llc` wrote into RUN/landscape/: the top
Hessian eigenvalues and the local learning coefficient over training, the Hessian's spectral density,
mode-connectivity paths, loss surfaces and circuit-direction walks.
The report shows each one only when its file exists.

    from grokscope.report import landscape_figures
    landscape_figures.llc_progress("runs/nanda2023")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from grokscope.report.data import MissingData
from grokscope.report.figures import PALETTE, TEST, TRAIN, _data, _f32, _layout, _shade_phases, _vline


def _folder(src: Any) -> Path:
    data = _data(src)
    return Path(data.path or ".") / "landscape"


def _table(src: Any, name: str, how: str) -> pd.DataFrame:
    f = _folder(src) / name
    if not f.is_file():
        raise MissingData(f"no {name}: run `{how}` first")
    return pd.read_parquet(f)


def has_hessian_progress(data: Any) -> bool:
    return (_folder(data) / "hessian-train.parquet").is_file()


def has_llc_progress(data: Any) -> bool:
    return (_folder(data) / "llc-train.parquet").is_file()


def has_connections(data: Any) -> bool:
    return bool(list(_folder(data).glob("connect-*.json")))


def hessian_progress(src: Any) -> go.Figure:
    """The top Hessian eigenvalues of the train loss at each analysed checkpoint (log scale)."""
    data = _data(src)
    df = _table(src, "hessian-train.parquet", f"grokscope landscape {data.path} --checkpoints 40").sort_values("step")
    fig = go.Figure()
    cols = sorted((c for c in df if c.startswith("lambda_")), key=lambda c: int(c.split("_")[1]))
    for i, c in enumerate(cols):
        fig.add_trace(go.Scatter(x=df["step"], y=_f32(df[c].clip(lower=1e-12)), mode="lines+markers", name=f"λ{i + 1}",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=3 if i == 0 else 1)))
    _shade_phases(fig, data.phases, float(df["step"].min()))
    fig.update_yaxes(type="log", title="eigenvalue")
    fig.update_xaxes(title="step")
    return _layout(fig, "Top Hessian eigenvalues of the train loss over training")


def llc_progress(src: Any) -> go.Figure:
    """The estimated LLC (mean +- std over chains) at each analysed checkpoint, with the test loss."""
    data = _data(src)
    df = _table(src, "llc-train.parquet", f"grokscope llc {data.path} --checkpoints 40").sort_values("step")
    x, y, e = df["step"].to_numpy(), df["llc"].to_numpy(), df["llc_std"].to_numpy()
    fig = go.Figure([
        go.Scatter(x=np.concatenate([x, x[::-1]]), y=_f32(np.concatenate([y + e, (y - e)[::-1]])), fill="toself", mode="lines",
                   fillcolor="rgba(31,119,180,0.15)", line=dict(width=0), hoverinfo="skip", showlegend=False),
        go.Scatter(x=x, y=_f32(y), mode="lines+markers", name="LLC (train)", line=dict(color=TRAIN, width=3)),
    ])
    m = data.metrics
    if m is not None and len(m):
        fig.add_trace(go.Scatter(x=m["step"], y=_f32(m["test_loss"]), name="test loss", yaxis="y2",
                                 line=dict(color=TEST, width=1)))
        fig.update_layout(yaxis2=dict(title="test loss", overlaying="y", side="right", type="log", showgrid=False,
                                      dtick=1, exponentformat="power"))
    _shade_phases(fig, data.phases, float(x.min()))
    _vline(fig, (data.summary or {}).get("grokking_step"), 1, "test acc >= 0.99")
    log = bool(np.all(y > 0))  # the LLC spans decades over training; log where it can
    if log:
        fig.data[0].y = _f32(np.maximum(fig.data[0].y, 0.5 * y.min()))
    fig.update_layout(yaxis=dict(title="local learning coefficient", type="log" if log else "linear",
                                 exponentformat="power"), xaxis=dict(title="step"))
    return _layout(fig, "Local learning coefficient over training (SGLD, mean and spread over chains)")


def connections(src: Any) -> go.Figure:
    """The loss along every linear path and trained Bezier curve that `--connect` measured."""
    files = sorted(_folder(src).glob("connect-*.json"))
    if not files:
        raise MissingData("no connect-*.json: run `grokscope landscape RUN --connect A B` first")
    fig = go.Figure()
    for i, f in enumerate(files):
        doc = json.loads(f.read_text())
        s, path, color = doc.get("settings") or {}, doc.get("path") or {}, PALETTE[i % len(PALETTE)]
        label = (f"{s.get('step_a')} → {s.get('step_b')}" + ("" if s.get("run_b") == s.get("run_a") else f" of {s.get('run_b')}")
                 + f", {s.get('split', 'train')} loss")
        fig.add_trace(go.Scatter(x=path.get("t"), y=_f32(path.get("linear")), name=f"{label}: line (barrier "
                                 f"{doc['linear_barrier']:.3g})", line=dict(color=color, dash="dash")))
        if "bezier" in path:
            fig.add_trace(go.Scatter(x=path["t"], y=_f32(path["bezier"]), name=f"{label}: Bezier (barrier "
                                     f"{doc['bezier_barrier']:.3g})", line=dict(color=color)))
    fig.update_yaxes(type="log", title="loss")
    fig.update_xaxes(title="t along the path")
    return _layout(fig, "Mode connectivity: the loss between two checkpoints")


def _surface_kind(src: Any, split: str) -> str | None:
    return next((k for k in ("pca", "2d", "1d") if (_folder(src) / f"slice-{k}-{split}.parquet").is_file()), None)


def has_surface(data: Any) -> bool:
    return _surface_kind(data, "train") is not None


def has_test_surface(data: Any) -> bool:
    return _surface_kind(data, "test") is not None


def has_surface_3d(data: Any) -> bool:
    return _surface_kind(data, "train") in ("pca", "2d")


def _plane(src: Any, split: str) -> tuple[str, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame | None]:
    """kind, the slice table, its axes, log10 loss on the grid, and the trajectory (pca only)."""
    folder, kind = _folder(src), _surface_kind(src, split)
    if kind is None:
        raise MissingData(f"no slice-*-{split}.parquet: run `grokscope landscape RUN --slice pca --split {split}` first")
    df = pd.read_parquet(folder / f"slice-{kind}-{split}.parquet")
    if kind == "1d":
        return kind, df, df["alpha"].to_numpy(), np.zeros(0), np.zeros(0), None
    a, b = np.sort(df["alpha"].unique()), np.sort(df["beta"].unique())
    z = df.pivot(index="beta", columns="alpha", values="loss").reindex(index=b, columns=a).to_numpy()
    track_file = folder / f"slice-pca-{split}-trajectory.parquet"
    track = pd.read_parquet(track_file).sort_values("step") if kind == "pca" and track_file.is_file() else None
    return kind, df, a, b, np.log10(np.maximum(z, 1e-12)), track


def loss_surface(src: Any, split: str = "train") -> go.Figure:
    """The loss surface `--slice` measured: the PCA plane with the trajectory drawn on it
    (preferred), else the 2D or 1D slice along random filter-normalised directions."""
    kind, df, a, b, z, track = _plane(src, split)
    if kind == "1d":
        fig = go.Figure(go.Scatter(x=df["alpha"], y=_f32(df["loss"]), mode="lines+markers",
                                   line=dict(color=TRAIN if split == "train" else TEST)))
        fig.update_yaxes(type="log", title=f"{split} loss")
        fig.update_xaxes(title="alpha (filter-normalised direction)")
        return _layout(fig, f"{split.capitalize()} loss along a random filter-normalised direction")
    fig = go.Figure(go.Contour(x=a, y=b, z=_f32(z), colorscale="Viridis", ncontours=25,
                               colorbar=dict(title="log10 loss"), hovertemplate="(%{x:.3g}, %{y:.3g}): 10^%{z:.2f}<extra></extra>"))
    title = f"{split.capitalize()} loss on two random filter-normalised directions"
    if track is not None:
        fig.add_trace(go.Scatter(x=track["alpha"], y=track["beta"], mode="lines+markers", name="training trajectory",
                                 marker=dict(color=track["step"], colorscale="Reds", size=7, line=dict(color="white", width=1)),
                                 line=dict(color="white", width=2), text=[f"step {s}" for s in track["step"]],
                                 hovertemplate="%{text}<extra></extra>"))
        info_file = _folder(src) / f"slice-pca-{split}.json"
        expl = json.loads(info_file.read_text()).get("explained") if info_file.is_file() else None
        title = (f"{split.capitalize()} loss in the plane of the trajectory's top two principal components"
                 + (f" ({expl:.0%} of its spread)" if expl is not None else ""))
        fig.update_xaxes(title="PC 1")
        fig.update_yaxes(title="PC 2")
    return _layout(fig, title, height=520)


def loss_surface_test(src: Any) -> go.Figure:
    return loss_surface(src, "test")


def loss_surface_3d(src: Any) -> go.Figure:
    """The train surface of `loss_surface` in 3D (log10 loss as height), the trajectory on it."""
    kind, df, a, b, z, track = _plane(src, "train")
    if kind == "1d":
        raise MissingData("a 1d slice has no 3D view: run `grokscope landscape RUN --slice pca` first")
    fig = go.Figure(go.Surface(x=a, y=b, z=_f32(z), colorscale="Viridis", colorbar=dict(title="log10 loss"), opacity=0.9))
    if track is not None:
        # the trajectory's height: the surface's at the nearest grid point, a little above it to stay visible
        ia = np.abs(a[None, :] - track["alpha"].to_numpy()[:, None]).argmin(1)
        ib = np.abs(b[None, :] - track["beta"].to_numpy()[:, None]).argmin(1)
        h = z[ib, ia]
        fig.add_trace(go.Scatter3d(x=track["alpha"], y=track["beta"], z=_f32(h + 0.05), mode="lines+markers",
                                   name="training trajectory", marker=dict(size=3, color=track["step"], colorscale="Reds"),
                                   line=dict(color="red", width=4), text=[f"step {s}" for s in track["step"]],
                                   hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(scene=dict(xaxis_title="PC 1" if kind == "pca" else "alpha", yaxis_title="PC 2" if kind == "pca" else "beta",
                                 zaxis_title="log10 train loss"))
    return _layout(fig, "The train loss surface in 3D", height=560)


def _density_files(src: Any) -> list[Path]:
    return [f for f in sorted(_folder(src).glob("hessian-*-step*.json")) if "density" in json.loads(f.read_text())]


def has_spectrum(data: Any) -> bool:
    return bool(_density_files(data))


def hessian_spectrum(src: Any) -> go.Figure:
    """The Hessian's spectral density (stochastic Lanczos quadrature) at every checkpoint that
    `--density N` measured, with the top-k eigenvalues as ticks: a few large outliers over a bulk
    near zero is the usual shape, and the bulk's width is the basin's flatness."""
    files = _density_files(src)
    if not files:
        raise MissingData("no hessian-*-step*.json with a density: run `grokscope landscape RUN --density 4` first")
    docs = sorted((json.loads(f.read_text()) for f in files), key=lambda d: (d["split"], d["step"]))
    fig = go.Figure()
    for i, d in enumerate(docs):
        color, dens = PALETTE[i % len(PALETTE)], d["density"]
        label = f"step {d['step']} ({d['split']})"
        y = np.maximum(np.asarray(dens["density"], dtype=float), 1e-12)
        fig.add_trace(go.Scatter(x=dens["grid"], y=_f32(y), mode="lines", name=label, legendgroup=label,
                                 line=dict(color=color)))
        top = np.asarray(d["eigenvalues"], dtype=float)
        fig.add_trace(go.Scatter(x=top, y=_f32(np.full(len(top), y.max())), mode="markers", name=f"{label}: top-{len(top)}",
                                 legendgroup=label, showlegend=False, marker=dict(symbol="line-ns-open", size=14, color=color),
                                 hovertemplate="λ = %{x:.4g}<extra></extra>"))
    fig.update_yaxes(type="log", title="density", exponentformat="power")
    fig.update_xaxes(title="Hessian eigenvalue")
    return _layout(fig, "Hessian spectral density of the loss (ticks: the top eigenvalues)")


def has_circuit_walks(data: Any) -> bool:
    return bool(list(_folder(data).glob("circuits-*.json")))


def circuit_walks(src: Any) -> go.Figure:
    """Each `--circuits A B` walk: the losses of A, B and the joint (training) loss along the
    direction that keeps A and ablates B, straight (dashed) and relaxed orthogonally (solid)."""
    from plotly.subplots import make_subplots

    files = sorted(_folder(src).glob("circuits-*.json"))
    if not files:
        raise MissingData("no circuits-*.json: run `grokscope landscape RUN --circuits A B` first")
    docs = [json.loads(f.read_text()) for f in files]
    yes = lambda x: "yes" if x else "no"  # noqa: E731
    titles = [f"keep {d['a']}, ablate {d['b']} ({d['split']}, step {d['step']}): sloped canyon "
              f"{yes(d['verdict']['sloped_canyon'])}" for d in docs]
    fig = make_subplots(rows=len(docs), cols=1, subplot_titles=titles, vertical_spacing=0.12 / max(len(docs) - 1, 1))
    for row, (f, d) in enumerate(zip(files, docs), start=1):
        walk = pd.read_parquet(f.with_suffix(".parquet"))
        for col, name, color in ((f"loss_{d['a']}", f"{d['a']} (kept)", TRAIN), (f"loss_{d['b']}", f"{d['b']} (ablated)", TEST),
                                 ("joint", "joint (train loss)", "#444444")):
            for prefix, dash, label in (("", "dash", "straight"), ("relaxed_", None, "relaxed")):
                fig.add_trace(go.Scatter(x=walk["t"], y=_f32(walk[prefix + col].clip(lower=1e-12)), mode="lines",
                                         name=f"{name}, {label}", legendgroup=name, showlegend=row == 1,
                                         line=dict(color=color, dash=dash)), row=row, col=1)
        fig.update_yaxes(type="log", title="loss", row=row, col=1)
        fig.update_xaxes(title="t (distance along the direction)", row=row, col=1)
    return _layout(fig, "Circuit directions: keep one circuit, ablate another", height=340 * len(docs) + 80)
