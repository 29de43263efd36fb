"""PNG and GIF export through kaleido: every figure written, and each PNG is the figure the page draws."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from grokscope.config import ConfigError
from grokscope.report import figures as G, fourier_figures as F, write_report
from grokscope.report import static
from grokscope.report.data import load_run_data
from grokscope.report.sections import sections_for

PIL = pytest.importorskip("PIL.Image")
CHROMIUM = Path("/usr/bin/chromium")  # the browser the page tests use (scripts/install_browser.sh)


def _exporter_or_skip():
    try:
        static.check_export()
    except ConfigError as err:
        pytest.skip(str(err))


@pytest.mark.browser
def test_png_dir_writes_every_figure_and_the_circle_gif(tmp_path):
    _exporter_or_skip()
    from planted_runs import plant_run

    run = plant_run(tmp_path / "run", checkpoint_every=500)  # 13 checkpoints keep the GIF quick
    write_report(run, out=tmp_path / "r.html", png_dir=tmp_path / "png")
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    shown = sections_for(["fourier"], data=load_run_data(run))  # "components" only where the task has them
    assert names == sorted([f"{s.id}.png" for s in shown] + ["circles.gif"])
    with PIL.open(tmp_path / "png" / "curves.png") as im:
        assert im.size[0] == static.WIDTH and im.size[1] >= 300
    with PIL.open(tmp_path / "png" / "circles.gif") as im:
        assert im.n_frames > 5


@pytest.mark.browser
def test_a_png_is_the_figure_the_page_draws(planted_run, tmp_path):
    """kaleido's PNG against a screenshot of the same figure drawn by plotly.js in the page's browser."""
    _exporter_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (run scripts/install_browser.sh)")

    fig = G.loss_curves(planted_run)
    width, height = static.WIDTH, int(fig.layout.height)
    png = tmp_path / "curves.png"
    static.write_png(fig, png)
    page_file = tmp_path / "fig.html"
    fig.write_html(page_file, include_plotlyjs=True, full_html=True, default_width=f"{width}px",
                   default_height=f"{height}px", config={"staticPlot": True})
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": width + 40, "height": height + 40})
        page.goto(page_file.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('.main-svg').length > 0")
        shot = page.locator(".plotly-graph-div").screenshot()
        browser.close()
    a = np.asarray(PIL.open(png).convert("RGB"), dtype=np.int16)
    b = np.asarray(PIL.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape == (height, width, 3)
    diff = np.abs(a - b).mean()
    print(f"mean absolute difference {diff:.4f} of 255, {np.mean(np.abs(a - b).max(-1) > 0):.4%} of pixels differ")
    assert diff < 2.0, f"mean absolute difference {diff:.2f} of 255"


def test_gif_needs_frames(planted_run, tmp_path):
    with pytest.raises(ValueError, match="no animation frames"):
        static.write_gif(G.loss_curves(planted_run), tmp_path / "x.gif")


def test_without_a_browser_png_export_stops_before_the_page_is_written(planted_run, tmp_path, monkeypatch):
    pytest.importorskip("kaleido")
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    with pytest.raises(ConfigError, match="--png: needs a Chrome or Chromium"):
        write_report(planted_run, out=tmp_path / "r.html", png_dir=tmp_path / "png")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "png").exists()


def test_the_animation_stills_carry_their_steps(planted_run):
    fig = F.embedding_circles(planted_run)
    stills = static._frame_figures(fig, max_frames=4)
    assert 1 < len(stills) <= 4
    assert all("(step " in s.layout.title.text for s in stills) and not stills[0].layout.sliders
