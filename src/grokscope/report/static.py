"""Static export of report figures: PNG per figure, GIF for an animation, drawn with matplotlib.

Why matplotlib and not kaleido: kaleido needs a Chrome/Chromium at export time, which clusters
and CI images often lack; matplotlib (with pillow, its own dependency) installs from PyPI and runs
headless anywhere. Rather than a second hand-written version of every figure, `to_matplotlib`
translates the plotly figure itself, covering exactly what `figures.py` uses: scatter (lines,
markers), bar and heatmap traces on `make_subplots` grids, log axes, fixed ranges and ticks,
rectangle / line shapes (phase bands), annotations (subplot titles, labels) and legends. So a PNG
shows the same data as the interactive figure, in a plainer style.
"""

from __future__ import annotations

import base64
import copy
import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

log = logging.getLogger(__name__)

DPI = 100
VALIGN = {"top": "top", "bottom": "bottom", "middle": "center"}  # plotly yanchor -> matplotlib va
DASHES = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--", "solid": "-"}
_DTYPES = {"f4": np.float32, "f8": np.float64, "i1": np.int8, "u1": np.uint8, "i2": np.int16, "u2": np.uint16,
           "i4": np.int32, "u4": np.uint32}


def _new_figure(width: int, height: int):
    """A matplotlib Figure outside pyplot: no global backend switch, nothing to close (safe in Jupyter)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("PNG / GIF export needs matplotlib: pip install matplotlib") from None
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def _arr(v: Any) -> np.ndarray | None:
    """A trace array from plotly's dict form: lists, or base64 typed arrays {dtype, bdata, shape}."""
    if v is None:
        return None
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=_DTYPES[v["dtype"]])
        if "shape" in v:
            a = a.reshape([int(s) for s in str(v["shape"]).split(",")])
        return a
    return np.asarray(v)


def _color(c: Any) -> Any:
    """A plotly colour string ('#hex', 'rgb(...)', 'rgba(...)', a name) as a matplotlib colour."""
    if not isinstance(c, str):
        return c
    m = re.match(r"rgba?\(([^)]*)\)", c.replace(" ", ""))
    if m:
        parts = [float(p) for p in m.group(1).split(",")]
        rgb = [p / 255 for p in parts[:3]]
        return tuple(rgb + ([parts[3]] if len(parts) > 3 else []))
    return c


def _cmap(scale: Any):
    from matplotlib.colors import LinearSegmentedColormap
    import plotly.colors as pc

    if scale is None:
        scale = "Viridis"
    if isinstance(scale, str):
        scale = pc.get_colorscale(scale)
    return LinearSegmentedColormap.from_list("plotly", [(float(v), _color(c)) for v, c in scale])


def _text(t: Any) -> str:
    if isinstance(t, dict):
        t = t.get("text")
    return re.sub(r"<[^>]+>", "", str(t or ""))


def _axes_ids(layout: dict) -> list[str]:
    ids = sorted((k for k in layout if re.fullmatch(r"xaxis\d*", k)), key=lambda k: int(k[5:] or 1))
    return ids or ["xaxis"]


def to_matplotlib(fig: go.Figure | dict, width: int = 1100):
    """Draw a plotly figure (or its dict) with matplotlib; returns a matplotlib Figure."""
    d = fig if isinstance(fig, dict) else fig.to_dict()
    layout = d.get("layout", {})
    height = int(layout.get("height") or 450)
    margin = {"l": 60, "r": 30, "t": 70, "b": 50, **(layout.get("margin") or {})}
    mfig = _new_figure(width, height)
    from matplotlib.transforms import blended_transform_factory

    W, H = width, height
    pw, ph = W - margin["l"] - margin["r"] - 60, H - margin["t"] - margin["b"]

    def paper_to_fig(x: float, y: float) -> tuple[float, float]:
        return (margin["l"] + x * pw) / W, (margin["b"] + y * ph) / H

    axes: dict[str, Any] = {}
    for xid in _axes_ids(layout):
        suffix = xid[5:]
        xa = layout.get(xid, {})
        ya = layout.get(f"yaxis{suffix}", {})
        x0, x1 = xa.get("domain", [0, 1])
        y0, y1 = ya.get("domain", [0, 1])
        fx0, fy0 = paper_to_fig(x0, y0)
        fx1, fy1 = paper_to_fig(x1, y1)
        ax = mfig.add_axes((fx0, fy0, max(fx1 - fx0, 0.01), max(fy1 - fy0, 0.01)))
        ax.tick_params(labelsize=7)
        axes["x" + suffix] = (ax, xa, ya)

    heat_axes = set()
    for tr in d.get("data", []):
        if tr.get("visible") in (False, "legendonly"):
            continue
        key = tr.get("xaxis", "x")
        ax = axes.get(key, next(iter(axes.values())))[0]
        kind = tr.get("type", "scatter")
        x, y = _arr(tr.get("x")), _arr(tr.get("y"))
        label = tr.get("name") if tr.get("showlegend", True) is not False and tr.get("name") else None
        if kind == "scatter":
            mode = tr.get("mode", "lines")
            line = tr.get("line") or {}
            if "lines" in mode:
                ax.plot(x, y, color=_color(line.get("color")), lw=float(line.get("width") or 1.5) * 0.8,
                        ls=DASHES.get(line.get("dash") or "solid", "-"), label=label)
            if "markers" in mode:
                mk = tr.get("marker") or {}
                c = mk.get("color")
                carr = _arr(c) if isinstance(c, (dict, list)) else None
                if carr is not None and carr.ndim == 1 and carr.dtype.kind in "iuf":
                    ax.scatter(x, y, c=carr, cmap=_cmap(mk.get("colorscale")), vmin=mk.get("cmin"),
                               vmax=mk.get("cmax"), s=float(mk.get("size") or 6) ** 2 / 2, label=label, zorder=3)
                else:
                    ax.scatter(x, y, color=_color(c), s=float(mk.get("size") or 6) ** 2 / 2, label=label, zorder=3)
        elif kind == "bar":
            c = (tr.get("marker") or {}).get("color")
            colors = [_color(v) for v in c] if isinstance(c, list) else _color(c)
            ax.bar([str(v) for v in x] if x is not None and x.dtype.kind in "OUS" else x, y, color=colors, label=label)
        elif kind == "heatmap":
            z = _arr(tr.get("z"))
            if x is not None and len(x):
                extent_x = (float(x[0]) - 0.5, float(x[-1]) + 0.5)
            else:
                extent_x = (-0.5, z.shape[1] - 0.5)
            ya = axes.get(key, (None, {}, {}))[2]
            reversed_y = ya.get("autorange") == "reversed"
            extent = (*extent_x, z.shape[0] - 0.5, -0.5) if reversed_y else (*extent_x, -0.5, z.shape[0] - 0.5)
            im = ax.imshow(z, aspect="auto", cmap=_cmap(tr.get("colorscale")), vmin=tr.get("zmin"),
                           vmax=tr.get("zmax"), origin="upper" if reversed_y else "lower", extent=extent,
                           interpolation="nearest")
            heat_axes.add(key)
            if tr.get("showscale", True) is not False:
                mfig.colorbar(im, ax=ax, fraction=0.04, pad=0.01)

    for key, (ax, xa, ya) in axes.items():
        for a, setter, meta in ((ax.xaxis, "x", xa), (ax.yaxis, "y", ya)):
            log_axis = meta.get("type") == "log"
            if log_axis:
                (ax.set_xscale if setter == "x" else ax.set_yscale)("log")
            rng = meta.get("range")
            if rng and None not in rng:
                rng = [10 ** v for v in rng] if log_axis else rng
                (ax.set_xlim if setter == "x" else ax.set_ylim)(*rng)
            title = _text(meta.get("title"))
            if title:
                (ax.set_xlabel if setter == "x" else ax.set_ylabel)(title, fontsize=8)
            if meta.get("tickvals") is not None:
                (ax.set_xticks if setter == "x" else ax.set_yticks)(
                    list(_arr(meta["tickvals"])), [str(t) for t in meta.get("ticktext") or _arr(meta["tickvals"])])
            if meta.get("showticklabels") is False:
                a.set_ticklabels([])
        if ya.get("autorange") == "reversed" and key not in heat_axes:
            ax.invert_yaxis()
        if ya.get("scaleanchor"):
            ax.set_aspect("equal", adjustable="box")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")

    for sh in layout.get("shapes", []):
        xref = sh.get("xref", "x")
        if xref not in axes:
            continue
        ax = axes[xref][0]
        if sh.get("type") == "rect":
            ax.axvspan(sh["x0"], sh["x1"], color=_color(sh.get("fillcolor")), lw=0, zorder=0)
        elif sh.get("type") == "line" and sh.get("x0") == sh.get("x1"):
            line = sh.get("line") or {}
            ax.axvline(sh["x0"], color=_color(line.get("color", "#444")), lw=1,
                       ls=DASHES.get(line.get("dash") or "solid", "-"))

    for an in layout.get("annotations", []):
        text = _text(an.get("text"))
        xref, yref = an.get("xref", "paper"), an.get("yref", "paper")
        size = float((an.get("font") or {}).get("size") or 10) * 0.8
        if xref == "paper" and yref == "paper":
            fx, fy = paper_to_fig(an.get("x", 0), an.get("y", 0))
            mfig.text(fx, fy + 0.005, text, ha="center", va="bottom", fontsize=size)
            continue
        base = xref.replace(" domain", "")
        if base not in axes:
            continue
        ax, xa, _ = axes[base]
        yaxes_frac = yref.endswith("domain")
        if xref.endswith("domain"):
            ax.text(an.get("x", 0.5), an.get("y", 0.5), text, transform=ax.transAxes, ha="center", va="center",
                    fontsize=size)
        elif yaxes_frac:
            x = an.get("x", 0)
            x = 10 ** x if xa.get("type") == "log" else x
            ax.text(x, an.get("y", 1.0), text, transform=blended_transform_factory(ax.transData, ax.transAxes),
                    ha="center" if an.get("xanchor") != "left" else "left", va=VALIGN.get(an.get("yanchor"), "bottom"),
                    fontsize=size, color="#444")

    for key, (ax, xa, ya) in axes.items():
        if xa.get("visible") is False or not (ax.has_data() or ax.texts):
            ax.remove()
    title = _text(layout.get("title"))
    if title:
        mfig.suptitle(title, x=0.01, ha="left", fontsize=12)
    return mfig


def write_png(fig: go.Figure, path: str | Path, width: int = 1100) -> Path:
    """Save a figure as PNG (at its last animation state when it is animated)."""
    mfig = to_matplotlib(fig, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mfig.savefig(path, dpi=DPI)
    return path


def write_gif(fig: go.Figure, path: str | Path, width: int = 800, frame_ms: int = 250, max_frames: int = 24) -> Path:
    """Save an animated figure as a GIF: one image per plotly frame (at most max_frames, evenly
    chosen, the last always kept: matplotlib draws ~0.3 s per frame), its step in the title."""
    from PIL import Image

    base = fig.to_dict()
    frames = base.get("frames") or []
    if not frames:
        raise ValueError("the figure has no animation frames")
    keep = np.unique(np.round(np.linspace(0, len(frames) - 1, min(max_frames, len(frames)))).astype(int))
    frames = [frames[i] for i in keep]
    images = []
    title = _text(base.get("layout", {}).get("title"))
    for fr in frames:
        d = copy.deepcopy({k: v for k, v in base.items() if k != "frames"})
        idx = fr.get("traces") or list(range(len(fr.get("data", []))))
        for i, tr in zip(idx, fr.get("data", [])):
            d["data"][i] = {**d["data"][i], **tr}
        d["layout"]["title"] = f"{title} (step {fr.get('name')})"
        mfig = to_matplotlib(d, width)
        buf = io.BytesIO()
        mfig.savefig(buf, dpi=DPI, format="png")
        images.append(Image.open(io.BytesIO(buf.getvalue())).convert("P", palette=Image.ADAPTIVE))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=True)
    return path


def export_figures(figs: dict[str, go.Figure], png_dir: str | Path, gif: tuple[str, ...] = ("circles",)) -> list[Path]:
    """PNG for every figure, plus a GIF for each named animation present; returns the files written."""
    out = Path(png_dir)
    written = []
    for name, fig in figs.items():
        written.append(write_png(fig, out / f"{name}.png"))
        if name in gif and fig.frames:
            written.append(write_gif(fig, out / f"{name}.gif"))
    log.info("exported %d files to %s", len(written), out)
    return written
