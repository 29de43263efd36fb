"""grokscope: train, analyse, intervene on and report grokking runs on algorithmic tasks.

The Python API mirrors the CLI verbs:
    grokscope.train(cfg, out)      -> run directory        (grokscope train)
    grokscope.load_run(path)       -> Run                  (read a run directory)
    grokscope.analyze(path)        -> summary dict         (grokscope analyze)
    grokscope.report(paths)        -> report.html path     (grokscope report)
    grokscope.demo(out)            -> run directory        (grokscope demo)
"""

from __future__ import annotations

__version__ = "0.1.0"

from grokscope.config import ConfigError, RunConfig, make_config  # noqa: E402
from grokscope.presets import get_preset  # noqa: E402
from grokscope.run import Run, load_run  # noqa: E402
from grokscope.trainer import Callback, TrainState, train, train_ensemble  # noqa: E402


def analyze(path, **kwargs) -> dict:
    """Write RUN/analysis/ and return the summary (see docs/analysis.md)."""
    from grokscope.analysis import analyze_run

    return analyze_run(path, **kwargs)


def report(paths, **kwargs):
    """Write RUN/report.html (one run) or a comparison report (several); returns its path."""
    from grokscope.report import write_report

    return write_report(paths, **kwargs)


__all__ = ["ConfigError", "RunConfig", "make_config", "get_preset", "Run", "load_run", "Callback", "TrainState",
           "train", "train_ensemble", "analyze", "report", "__version__"]
