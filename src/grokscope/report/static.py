"""Static export of report figures: a PNG per figure and a GIF per animation, drawn by kaleido.

kaleido is plotly's own exporter. It draws each figure with the plotly.js that the HTML report
inlines, in a headless Chrome or Chromium, so a PNG is the figure the page shows
(tests/report/test_static.py compares them pixel by pixel). It needs a browser when it exports:
BROWSER_PATH, a chromium or chrome on PATH, or one fetched with `plotly_get_chrome`
(scripts/install_browser.sh installs Debian's chromium). Without kaleido or a browser, `--png`
stops with one line before anything is written.
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from grokscope.config import ConfigError

log = logging.getLogger(__name__)

WIDTH = 1100  # px: the report page's figure width
GIF_WIDTH = 800
GIF_FRAMES, FRAME_MS = 24, 250  # at most 24 frames, 250 ms each


def check_export() -> None:
    """Refuse `--png` in one line where kaleido or a browser for it is missing."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ConfigError("--png", "needs kaleido, plotly's exporter: pip install 'grokscope[png]'") from None
    try:  # kaleido's own search (BROWSER_PATH, PATH, the usual places, a plotly_get_chrome download)
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except (ImportError, AttributeError):  # another choreographer: let kaleido search when it exports
        return
    if found is None:
        raise ConfigError("--png", "needs a Chrome or Chromium for kaleido: install chromium "
                          "(scripts/install_browser.sh), set BROWSER_PATH, or run plotly_get_chrome")


def _height(fig: go.Figure) -> int:
    return int(fig.layout.height or 500)


def _frame_figures(fig: go.Figure, max_frames: int) -> list[go.Figure]:
    """One still figure per animation frame (at most max_frames, evenly chosen, the last always
    kept), with the frame's step in its title."""
    base = fig.to_dict()
    frames = base.get("frames") or []
    if not frames:
        raise ValueError("the figure has no animation frames")
    keep = np.unique(np.round(np.linspace(0, len(frames) - 1, min(max_frames, len(frames)))).astype(int))
    title = (base.get("layout", {}).get("title") or {}).get("text") or ""
    out = []
    for i in keep:
        fr = frames[i]
        d = copy.deepcopy({k: v for k, v in base.items() if k != "frames"})
        idx = fr.get("traces") or list(range(len(fr.get("data", []))))
        for j, tr in zip(idx, fr.get("data", [])):
            d["data"][j] = {**d["data"][j], **tr}
        d["layout"].pop("updatemenus", None)
        d["layout"].pop("sliders", None)
        d["layout"]["title"] = {**(d["layout"].get("title") or {}), "text": f"{title} (step {fr.get('name')})"}
        out.append(go.Figure(d))
    return out


def _render(items: list[tuple[go.Figure, Path, int]]) -> None:
    """Draw each (figure, PNG path, width) in one kaleido session (one browser start, ~3 s). What
    kaleido reports as failed, or leaves unwritten, is drawn once more; then it is an error."""
    import kaleido

    for _, p, _ in items:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
    todo, errors = list(items), ()
    for attempt in (1, 2):
        if not todo:
            return
        specs = [{"fig": f, "path": str(p), "opts": {"format": "png", "width": w, "height": _height(f)}} for f, p, w in todo]
        errors = kaleido.write_fig_from_object_sync(specs, cancel_on_error=False) or ()
        todo = [item for item in todo if not item[1].is_file()]
        if todo:
            log.warning("kaleido left %d of %d figures unwritten (attempt %d): %s", len(todo), len(specs), attempt,
                        "; ".join(str(e) for e in errors) or "no error given")
    if todo:
        raise RuntimeError(f"kaleido could not draw {', '.join(p.name for _, p, _ in todo)}: "
                           + ("; ".join(str(e) for e in errors) or "no error given"))


def write_png(fig: go.Figure, path: str | Path, width: int = WIDTH) -> Path:
    """Save a figure as PNG (an animated figure as its initial state, as the page first shows it)."""
    check_export()
    path = Path(path)
    _render([(fig, path, width)])
    return path


def write_gif(fig: go.Figure, path: str | Path, width: int = GIF_WIDTH, frame_ms: int = FRAME_MS,
              max_frames: int = GIF_FRAMES) -> Path:
    """Save an animated figure as a GIF, one image per plotly frame (at most max_frames)."""
    stills = _frame_figures(fig, max_frames)
    check_export()
    with tempfile.TemporaryDirectory() as tmp:
        pngs = [Path(tmp) / f"{i:03d}.png" for i in range(len(stills))]
        _render([(f, p, width) for f, p in zip(stills, pngs)])
        return _assemble_gif(pngs, Path(path), frame_ms)


def _assemble_gif(pngs: list[Path], path: Path, frame_ms: int) -> Path:
    from PIL import Image

    images = [Image.open(io.BytesIO(p.read_bytes())).convert("P", palette=Image.ADAPTIVE) for p in pngs]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=True)
    return path


def export_figures(figs: dict[str, go.Figure], png_dir: str | Path, gif: tuple[str, ...] = ("circles",)) -> list[Path]:
    """PNG for every figure, plus a GIF for each named animation present; returns the files written.
    The figures and the GIFs' frames are drawn in one kaleido session."""
    check_export()
    out = Path(png_dir)
    pngs = [out / f"{name}.png" for name in figs]
    animations = {name: _frame_figures(fig, GIF_FRAMES) for name, fig in figs.items() if name in gif and fig.frames}
    with tempfile.TemporaryDirectory() as tmp:
        frames = {name: [Path(tmp) / f"{name}-{i:03d}.png" for i in range(len(st))] for name, st in animations.items()}
        _render([(fig, p, WIDTH) for fig, p in zip(figs.values(), pngs)]
                + [(f, p, GIF_WIDTH) for name, st in animations.items() for f, p in zip(st, frames[name])])
        gifs = [_assemble_gif(frames[name], out / f"{name}.gif", FRAME_MS) for name in animations]
    log.info("exported %d files to %s", len(pngs) + len(gifs), out)
    return pngs + gifs
