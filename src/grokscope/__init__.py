"""grokscope: train, analyse, intervene on and report grokking runs on algorithmic tasks.

The Python API mirrors the CLI verbs:
    grokscope.train(cfg, out)      -> run directory        (grokscope train)
    grokscope.load_run(path)       -> Run                  (read a run directory)
    grokscope.analyze(path)        -> summary dict         (grokscope analyze)
    grokscope.report(paths)        -> report.html path     (grokscope report)
    grokscope.demo(out)            -> run directory        (grokscope demo)
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
# (`grokscope train` starts faster); each is the very function of its module.
_LAZY = {"analyze": ("grokscope.analysis", "analyze"), "report": ("grokscope.report", "write_report"),
         "demo": ("grokscope.demo", "demo")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'grokscope' has no attribute {name!r}")

__all__ = ["ConfigError", "RunConfig", "make_config", "get_preset", "Run", "load_run", "Callback", "TrainState",
           "train", "train_ensemble", "analyze", "report", "demo", "__version__"]
