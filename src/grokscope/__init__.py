"""grokscope: train, analyse, intervene on and report grokking runs on algorithmic tasks.

The Python API mirrors the CLI verbs:
    grokscope.train(cfg, out)      -> run directory        (grokscope train)
    grokscope.load_run(path)       -> Run                  (read a run directory)
    grokscope.analyze(path)        -> summary dict         (grokscope analyze)
    grokscope.formation(runs)      -> CoincidenceTest      (grokscope formation)
    grokscope.landscape(run)       -> Curvature            (grokscope landscape)
    grokscope.llc(run)             -> LLCEstimate          (grokscope llc)
    grokscope.saliency(run)        -> Saliency             (grokscope saliency)
    grokscope.report(paths)        -> report.html path     (grokscope report)
    grokscope.demo(out)            -> run directory        (grokscope demo)
    grokscope.sweep(spec, out)     -> {trial: status}      (grokscope sweep)
    grokscope.runs(folder, where)  -> DataFrame            (grokscope runs)
"""

from __future__ import annotations

from typing import Any

from grokscope._version import __version__
from grokscope.callbacks import Callback, TrainState
from grokscope.config import ConfigError, RunConfig
from grokscope.presets import get_preset, make_config
from grokscope.run import Run, load_run
from grokscope.trainer import train, train_ensemble

# analyze / report / demo import the analysis and plotting stack, so they load on first use
# (`grokscope train` starts faster). `grokscope.analyze` is grokscope.analysis.analyze and
# `grokscope.demo` is grokscope.quickstart.demo. `grokscope.report` is the report package, which is
# callable: grokscope.report(paths) is grokscope.report.write_report(paths) (a package attribute
# and a function of the same name cannot both exist, since importing the package sets it).
_LAZY = {"analyze": ("grokscope.analysis", "analyze"), "report": ("grokscope.report", None),
         "demo": ("grokscope.quickstart", "demo"), "sweep": ("grokscope.sweeps", "run_sweep"),
         "runs": ("grokscope.sweeps", "query_runs"), "formation": ("grokscope.analysis.chunks", "formation_test"),
         "landscape": ("grokscope.analysis.landscape.verbs", "landscape"), "llc": ("grokscope.analysis.landscape.verbs", "llc"),
         "saliency": ("grokscope.analysis.saliency", "saliency")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'grokscope' has no attribute {name!r}")

__all__ = ["ConfigError", "RunConfig", "make_config", "get_preset", "Run", "load_run", "Callback", "TrainState",
           "train", "train_ensemble", "analyze", "formation", "landscape", "llc", "saliency", "report", "demo", "sweep", "runs", "__version__"]
