"""PNG and GIF export through matplotlib."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL.Image")

from grokscope.report import figures as G, fourier_figures as F, write_report  # noqa: E402
from grokscope.report.sections import sections_for  # noqa: E402
from grokscope.report.static import to_matplotlib, write_gif  # noqa: E402


def test_png_dir_writes_every_figure_and_the_circle_gif(tmp_path):
    from planted_runs import plant_run

    run = plant_run(tmp_path / "run", checkpoint_every=500)  # 13 checkpoints keep the GIF quick
    write_report(run, out=tmp_path / "r.html", png_dir=tmp_path / "png")
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == sorted([f"{s.id}.png" for s in sections_for(["fourier"])] + ["circles.gif"])
    with PIL.open(tmp_path / "png" / "curves.png") as im:
        assert im.size[0] >= 800
    with PIL.open(tmp_path / "png" / "circles.gif") as im:
        assert im.n_frames > 5


def test_translation_keeps_axes_scales_and_data(planted_run):
    mfig = to_matplotlib(G.loss_curves(planted_run))
    loss_ax = mfig.axes[0]
    assert loss_ax.get_xscale() == "linear" and loss_ax.get_yscale() == "log"  # linear steps by default
    assert len(loss_ax.lines) == 2 + 1  # train, test, grokking line
    mfig = to_matplotlib(F.embedding_circles(planted_run))
    assert len(mfig.axes) == 2  # one plane per key frequency, no empty cells


def test_gif_needs_frames(planted_run, tmp_path):
    with pytest.raises(ValueError, match="no animation frames"):
        write_gif(G.loss_curves(planted_run), tmp_path / "x.gif")
