"""Reports: one self-contained HTML file per run (or per comparison), readable offline.

    from grokscope.report import write_report, fourier_figures
    write_report(["runs/nanda2023"])                 # -> runs/nanda2023/report.html
    write_report(["runs/a", "runs/b"], out="cmp.html")
    fourier_figures.embedding_circles("runs/nanda2023")   # any single figure, for a notebook

The report reads the run directory and RUN/analysis/ (written by `grokscope analyze`); it computes
no analysis itself. Which figures it shows for which analysis: `report.sections`. See docs/report.md.
"""

from __future__ import annotations

import logging
import sys
import time
import types
from pathlib import Path
from typing import Any, Sequence

from grokscope.config import ConfigError
from grokscope.io import RunDirError, atomic_write_text, check_folder
from grokscope.report import figures, fourier_figures, irrep_figures
from grokscope.report.data import MissingData, RunData, load_run_data
from grokscope.report.pages import comparison_page, crossover_page, run_page, sweep_page

log = logging.getLogger(__name__)

DEFAULT_COMPARISON = "comparison.html"


def write_report(runs: Any, out: str | Path | None = None, png_dir: str | Path | None = None,
                 reanalyze: bool = False) -> Path:
    """Write the report and return its path.

    runs: one run (path or Run) or a sequence of them. One run -> RUN/report.html; several -> a
    comparison report at `out` (default ./comparison.html); a sweep folder -> its sweep report
    (SWEEP/report.html). png_dir: also write every figure as
    PNG and the circle-formation animation as GIF (kaleido and a browser: report.static). reanalyze: run
    `grokscope.analyze` on each run first (a report warns when an analysis is older than its run).
    """
    if isinstance(runs, (str, Path)) or not isinstance(runs, Sequence):
        runs = [runs]
    if not runs:
        raise ConfigError("runs", "a report needs at least one run")
    if out is not None:
        if Path(out).is_dir():
            raise RunDirError(f"{out} is a folder; --out names the HTML file to write")
        check_folder(Path(out).parent)
    if png_dir is not None:
        from grokscope.report.static import check_export

        check_folder(png_dir)
        check_export()  # kaleido and a browser, before the page is written
    t0 = time.perf_counter()
    if len(runs) == 1 and isinstance(runs[0], (str, Path)):
        from grokscope.sweeps import load_sweep
        from grokscope.sweeps.crossover import load_crossover

        sweep, xover = load_sweep(runs[0]), load_crossover(runs[0])
        if sweep is not None or xover is not None:  # a sweep or crossover folder: its own report
            page, figs = sweep_page(Path(runs[0]), sweep) if sweep is not None else crossover_page(Path(runs[0]), xover)
            path = Path(out) if out is not None else Path(runs[0]) / "report.html"
            atomic_write_text(path, page.render("grokscope sweep report; works offline."))
            if png_dir is not None:
                from grokscope.report.static import export_figures

                export_figures(figs, png_dir, gif=())
            log.info("wrote %s in %.1f s", path, time.perf_counter() - t0)
            return path
    if reanalyze:
        from grokscope.analysis import analyze

        for r in runs:
            analyze(r)
    datas = [load_run_data(r) for r in runs]
    if len(datas) == 1:
        page, figs = run_page(datas[0])
        base = datas[0].path or Path(".")
        path = Path(out) if out is not None else base / "report.html"
        subtitle = "grokscope report; works offline."
    else:
        page, figs = comparison_page(datas)
        path = Path(out) if out is not None else Path(DEFAULT_COMPARISON)
        subtitle = "grokscope comparison report; works offline."
    atomic_write_text(path, page.render(subtitle))
    log.info("wrote %s (%.1f MB, %d figures) in %.1f s", path, path.stat().st_size / 1e6, page.n_figures,
             time.perf_counter() - t0)
    if png_dir is not None:
        from grokscope.report.static import export_figures

        export_figures(figs, png_dir)
    return path


class _CallableModule(types.ModuleType):
    """`grokscope.report(paths, ...)` is `write_report(paths, ...)`: the API verb and the package share a name."""

    def __call__(self, runs: Any, out: str | Path | None = None, png_dir: str | Path | None = None,
                 reanalyze: bool = False) -> Path:
        return write_report(runs, out=out, png_dir=png_dir, reanalyze=reanalyze)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["write_report", "figures", "fourier_figures", "irrep_figures", "load_run_data", "RunData", "MissingData"]
