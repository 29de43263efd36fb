"""The analysis driver: a run's checkpoints -> every registered analysis that applies -> RUN/analysis/.

    RUN/analysis/summary.json        the run-level summary: grokking step, phases, and each analysis's headline keys
    RUN/analysis/progress.parquet    one row per checkpoint: every analysis's progress columns, joined on step
    RUN/analysis/<name>/             one folder per analysis: summary.json, <table>.parquet, final.safetensors

Order of work: (1) choose the checkpoints (`max_checkpoints` evenly spaced); (2) each analysis
that applies prepares (the Fourier analysis derives its key frequencies from the final
checkpoint); (3) every checkpoint is loaded once and measured by each analysis, `threads` at a
time; (4) each analysis finalises; phases come from the logged metrics and the progress measures (`phases.detect_phases`);
(5) files are written atomically, the summaries last. Formats: docs/analysis.md.
"""

from __future__ import annotations

import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.phases import PhaseRule, component_changes, detect_phases, grokking_times, logged_components
from grokscope.analysis.registry import ANALYSES, AnalysisOutput
from grokscope.config import ConfigError, RunConfig
from grokscope.cpu import keep_freed_memory
from grokscope.io import RunDirError
from grokscope.run import as_run
from grokscope.runstore import StoredAnalysis, read_analysis_dir, write_analysis_dir
from grokscope.tasks import is_infinite

log = logging.getLogger(__name__)

FORMAT = "grokscope.analysis.v2"


@dataclass
class MemoryRun:
    """A run held in memory (planted models, notebooks): what the analysis reads of grokscope.run.Run."""

    config: RunConfig
    task: Any
    checkpoints: dict[int, dict[str, Tensor]]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: Path | None = None

    @property
    def steps(self) -> list[int]:
        return sorted(self.checkpoints)

    def params(self, step: int) -> dict[str, Tensor]:
        return {k: v.float() for k, v in self.checkpoints[step].items()}


@dataclass
class AnalysisResult:
    """What `analyze` computed: the run-level summary and progress table, each analysis's output,
    and where it was written (None for an in-memory run without out_dir)."""

    summary: dict
    progress: pd.DataFrame
    outputs: dict[str, AnalysisOutput]
    path: Path | None = None

    def __repr__(self) -> str:
        s = self.summary
        keys = f", key_frequencies {s['key_frequencies']}" if "key_frequencies" in s else ""
        return (f"AnalysisResult({', '.join(self.outputs) or 'no analysis'}; {s.get('n_checkpoints')} checkpoints, "
                f"grokking_step {s.get('grokking_step')}{keys}; written to {self.path})")


def subsample_steps(steps: Sequence[int], n: int | None) -> list[int]:
    """At most n of the steps (sorted, unique), evenly spaced by index, always keeping the first and
    the last (checkpoints are already log-spaced early). n None: all of them."""
    steps = sorted({int(s) for s in steps})
    if n is None or len(steps) <= n:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in idx]


def clean_json(x: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def _check_args(max_checkpoints: Any, threads: Any, names: Sequence[str] | None) -> None:
    for key, value in (("max_checkpoints", max_checkpoints), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(key, f"must be null or an integer >= 1 (got {value!r})")
    for name in names or ():
        if name not in ANALYSES:
            raise ConfigError("analyses", f"unknown analysis {name!r} (allowed: {', '.join(ANALYSES)})")


def _options_for(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in accepted}


def choose_analyses(run: Any, names: Sequence[str] | None = None) -> list[type]:
    """The registered analyses that apply to the run (of `names`, if given: each must apply). Unasked,
    an analysis with a `default_for(run)` classmethod that says False is left out (one that another
    analysis already covers on that run, such as the irreps of a modular run)."""
    chosen = []
    for name, cls in ANALYSES.items():
        if names is not None and name not in names:
            continue
        if names is None and hasattr(cls, "default_for") and not cls.default_for(run):
            continue
        reason = cls.applies_to(run)
        if reason is None:
            chosen.append(cls)
        elif names is not None:
            raise ConfigError("analyses", f"{name!r} does not apply to this run: {reason}")
        else:
            log.debug("analysis %s skipped: %s", name, reason)
    return chosen


def analyze(
    run_or_path: Any,
    analyses: Sequence[str] | None = None,
    max_checkpoints: int | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    phase_rule: PhaseRule = PhaseRule(),
    out_dir: str | Path | None = None,
    **options: Any,
) -> AnalysisResult:
    """Analyse a run (a path, a Run or a MemoryRun) and write RUN/analysis/ (or `out_dir`).

    analyses: names from the registry (default: every one that applies). max_checkpoints: measure
    that many evenly spaced checkpoints (default all). threads: checkpoints measured at once, each
    with single-threaded torch ops (default torch's intra-op thread count, i.e. the cores); most
    ops here are too small for torch to split well, and on 2 cores two checkpoints at once ran
    7-17 % faster than one checkpoint on two threads. progress(done, total) is called per checkpoint.
    options go to the analyses whose __init__ takes them (the Fourier analysis: key_rule, n_show).
    An in-memory run is written only when `out_dir` is given.
    """
    _check_args(max_checkpoints, threads, analyses)
    accepted = {p for cls in ANALYSES.values() for p in inspect.signature(cls.__init__).parameters}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(unknown[0], f"no analysis takes this option (options: {', '.join(sorted(accepted - {'self', 'run', 'steps'}))})")
    t0 = time.perf_counter()
    run = as_run(run_or_path)
    all_steps, metrics = run.steps, run.metrics  # each a directory listing / a parquet read: once
    steps = subsample_steps(all_steps, max_checkpoints)
    if not steps:
        raise RunDirError(f"{getattr(run, 'path', None) or 'the run'} has no checkpoints to analyse")
    keep_freed_memory()  # the grid forward allocates ~26 MB blocks per checkpoint; reuse them (grokscope.cpu)
    old_threads = torch.get_num_threads()
    workers = max(1, threads if threads is not None else old_threads)
    try:
        instances = [cls(run, steps, **_options_for(cls, options)) for cls in choose_analyses(run, analyses)]
        records: list[list[Any]] = [[] for _ in instances]
        for per_step in _measure_all(instances, run, steps, workers, progress):
            for i, record in enumerate(per_step):
                records[i].append(record)
    finally:
        torch.set_num_threads(old_threads)
    outputs = {a.name: a.finalize(r) for a, r in zip(instances, records)}
    for out in outputs.values():
        out.summary = clean_json(out.summary)

    progress_table = pd.DataFrame({"step": pd.Series(steps, dtype="int64")})
    for name, out in outputs.items():  # a column name already taken gets the analysis's name as suffix
        progress_table = progress_table.merge(out.progress, on="step", how="left", suffixes=("", f".{name}"))
    # phases and grokking from the logged metrics (denser than the checkpoints); else from progress
    logged = metrics is not None and len(metrics) > 0
    curves = metrics if logged else progress_table
    phases = detect_phases(curves, progress_table, phase_rule)
    summary: dict[str, Any] = {
        "format": FORMAT, "final_step": int(steps[-1]), "n_checkpoints": len(steps),
        "grokking_step": phases.grokking_step, "grokked": phases.grokking_step is not None,
        "grokking_times": grokking_times(curves, phase_rule), "train_acc_99_step": phases.train_acc_99_step,
        "phases": phases.boundaries(), "phase_changes": {k: c.to_dict() for k, c in phases.changes.items()},
        "phase_rule": phase_rule.to_dict(),
        "analyses": list(outputs),
        **_component_summary(metrics if logged else None, run, phases.memorization_end, phase_rule),
        # what the analysis saw, so a reader can tell when the run has moved on (grokscope.analysis.stale)
        "source": {"last_checkpoint": int(all_steps[-1]),
                   "last_metrics_step": int(metrics["step"].iloc[-1]) if logged else None},
    }
    for analysis, (name, out) in zip(instances, outputs.items()):
        keys = analysis.headline
        for k, v in out.summary.items():
            if k == "format" or (keys is not None and k not in keys):
                continue
            if k in summary:
                log.warning("analysis %s: summary key %r already set by another; kept in analysis/%s/ only", name, k, name)
                continue
            summary[k] = v
    summary["elapsed_s"] = time.perf_counter() - t0
    result = AnalysisResult(clean_json(summary), progress_table, outputs)
    if out_dir is None and getattr(run, "path", None) is not None:
        out_dir = Path(run.path) / "analysis"
    if out_dir is not None:
        result.path = write_result(result, out_dir)
    log.info("analysed %d checkpoints with %s in %.1f s", len(steps), ", ".join(outputs) or "no analysis",
             result.summary["elapsed_s"])
    return result


def _component_summary(metrics: pd.DataFrame | None, run: Any, memorization_end: int | None, rule: PhaseRule) -> dict:
    """{"component_changes": {component: change or None}} for a task whose loss splits; else {}."""
    names = logged_components(metrics)
    if not names:
        return {}
    after = None if is_infinite(run.task) else memorization_end
    return {"component_changes": {k: c.to_dict() if c else None for k, c in component_changes(metrics, names, after, rule).items()}}


def _measure_all(instances: list[Any], run: Any, steps: list[int], workers: int,
                 progress: Callable[[int, int], None] | None) -> Iterator[list[Any]]:
    """Each step's records (one per analysis), in step order; `workers` threads each load and measure
    one checkpoint at a time (torch releases the GIL inside ops, so the threads overlap their arithmetic)."""

    def one(step: int) -> list[Any]:
        params = run.params(step)
        return [a.measure(step, params) for a in instances]

    torch.set_num_threads(1)
    with ThreadPoolExecutor(workers, thread_name_prefix="grokscope-analyze") as pool:
        for i, per_step in enumerate(pool.map(one, steps)):
            yield per_step
            if progress is not None:
                progress(i + 1, len(steps))


def write_result(result: AnalysisResult, out_dir: str | Path) -> Path:
    """Each analysis into out_dir/<name>/, then the run-level progress and summary (last)."""
    out = Path(out_dir)
    for name, o in result.outputs.items():
        write_analysis_dir(out / name, o.summary, o.tables, o.tensors, o.meta)
    for stale in ("embed_fourier.parquet", "circles.parquet", "final.safetensors"):  # a v1 layout's files
        (out / stale).unlink(missing_ok=True)
    write_analysis_dir(out, result.summary, {"progress": result.progress})
    log.info("wrote %s", out)
    return out


def stale(run: Any, summary: dict | None) -> str | None:
    """Why a run-level analysis summary no longer describes the run (it has trained on since), or None.
    Summaries written before `source` existed are compared by their final_step."""
    if not summary:
        return None
    src = summary.get("source") or {"last_checkpoint": summary.get("final_step")}
    steps = run.steps
    seen = src.get("last_checkpoint")
    if steps and seen is not None and steps[-1] > seen:
        return (f"the analysis saw checkpoints up to step {seen}, but the run has trained on to step {steps[-1]}: "
                f"re-run `grokscope analyze {run.path}` (or `grokscope report --reanalyze`)")
    return None


def load_analysis(run_path: str | Path, name: str | None = None) -> StoredAnalysis:
    """Read back what `analyze` wrote: the run-level files (name None) or one analysis's folder."""
    d = Path(run_path)
    if (d / "analysis").is_dir():
        d = d / "analysis"
    return read_analysis_dir(d, name)


def over_checkpoints(run: Any, measure: Callable[[Any, int], dict], steps: Sequence[int] | None = None, n: int = 20,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """A DataFrame with a row {"step": s, **measure(run, s)} for each of `steps` (default: n evenly
    spaced checkpoints): the loop every "over all checkpoints" measure outside `analyze` shares
    (the landscape verbs, saliency)."""
    run = as_run(run)
    chosen = list(steps) if steps is not None else subsample_steps(run.steps, n)
    rows = []
    for i, s in enumerate(chosen):
        rows.append({"step": s, **measure(run, s)})
        if progress:
            progress(i + 1, len(chosen))
    return pd.DataFrame(rows)
