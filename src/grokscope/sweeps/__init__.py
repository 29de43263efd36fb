"""Sweeps: many runs from one spec (spec.py), run locally or on Ray (runner.py), and a queryable
index over any folder of runs (index.py). The sweep report is grokscope.report's."""

from grokscope.sweeps.index import index_runs, query_runs, write_index
from grokscope.sweeps.runner import load_sweep, run_sweep, trial_status
from grokscope.sweeps.spec import SweepSpec, Trial, load_spec

__all__ = ["SweepSpec", "Trial", "index_runs", "load_spec", "load_sweep", "query_runs", "run_sweep",
           "trial_status", "write_index"]
