"""`analyze_run`: every checkpoint of a run -> RUN/analysis/ (summary.json, progress.parquet, ...).

Order of work: (1) the final checkpoint's activations give the key frequencies (`KeyRule`);
(2) every checkpoint is measured against that fixed set, so the columns of progress.parquet are
the same at every step; (3) phases come from the logged metrics (`phases.detect_phases`);
(4) files are written atomically. See docs/analysis.md for the formats.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.measures import (
    CheckpointAnalyzer,
    KeyRule,
    Measures,
    W_L_cluster_norms,
    logits_fourier_norm,
    neuron_assignment,
)
from grokscope.analysis.phases import PhaseRule, Phases, detect_phases
from grokscope.config import RunConfig
from grokscope.cpu import keep_freed_memory

log = logging.getLogger(__name__)

FORMAT = "grokscope.analysis.v1"


class RunLike(Protocol):
    """What the analysis needs of a run (grokscope.run.Run satisfies it)."""

    config: RunConfig
    task: Any
    metrics: pd.DataFrame
    steps: list[int]

    def params(self, step: int) -> dict[str, Tensor]: ...


@dataclass
class MemoryRun:
    """A run held in memory (planted models, notebooks): same interface as grokscope.run.Run."""

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


class _DirRun:
    """Fallback reader of a run directory through RunStore, used when grokscope.run is absent."""

    def __init__(self, path: Path) -> None:
        from grokscope.runstore import RunStore
        from grokscope.tasks import make_task
        from grokscope.tasks.modular import ModularTask

        self.path = Path(path)
        self._store = RunStore(self.path)
        cfg, _ = self._store.read_config()
        self.config = RunConfig.from_dict(cfg)
        split = self._store.read_split()
        base = make_task(self.config.task)
        self.task = ModularTask.from_split(self.config.task, np.array(split["train"]), np.array(split["test"])) \
            if isinstance(base, ModularTask) else base
        self.metrics = self._store.load_metrics()
        self.steps = self._store.checkpoint_steps()

    def params(self, step: int) -> dict[str, Tensor]:
        return {k: v.float() for k, v in self._store.load_checkpoint(step).items()}


def open_run(run_or_path: Any) -> Any:
    """A Run object from a path (grokscope.run.load_run if present, else a RunStore reader), or the object itself."""
    if not isinstance(run_or_path, (str, Path)):
        return run_or_path
    try:
        from grokscope.run import load_run  # the lead's loader, when it exists
    except ImportError:
        log.debug("grokscope.run not available; reading %s with RunStore", run_or_path)
        return _DirRun(Path(run_or_path))
    return load_run(run_or_path)


@dataclass
class Analysis:
    """What `analyze` computes; `analyze_run` writes it to files."""

    summary: dict
    progress: pd.DataFrame
    embed_fourier: pd.DataFrame
    circles: pd.DataFrame
    final_tensors: dict[str, Tensor]
    final_meta: dict[str, str]


def _select_steps(steps: list[int], max_checkpoints: int | None) -> list[int]:
    if max_checkpoints is None or len(steps) <= max_checkpoints:
        return list(steps)
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, max_checkpoints)).astype(int))
    return [steps[i] for i in idx]


def _clean(x: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def analyze(
    run_or_path: Any,
    threshold: float = 0.85,
    key_rule: KeyRule | None = None,
    phase_rule: PhaseRule = PhaseRule(),
    max_checkpoints: int | None = None,
    n_show: int = 8,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> Analysis:
    """Compute every measure of a run. `threshold` is the neuron single-frequency share; `key_rule`
    overrides the other key-frequency parameters (its threshold is replaced by `threshold`).
    `threads`: checkpoints measured at once, each with single-threaded torch ops (None: torch's
    intra-op thread count, i.e. the cores). Most ops here are too small for torch to split well: on
    2 cores, two checkpoints at once ran 7-17 % faster than one checkpoint on two threads."""
    keep_freed_memory()  # the grid forward allocates ~26 MB blocks per checkpoint; reuse them (grokscope.cpu)
    old_threads = torch.get_num_threads()
    workers = max(1, int(threads if threads is not None else old_threads))
    try:
        return _analyze(run_or_path, threshold, key_rule, phase_rule, max_checkpoints, n_show, progress, workers)
    finally:
        torch.set_num_threads(old_threads)


def _measure_all(an: CheckpointAnalyzer, run: Any, steps: list[int], known: dict[int, tuple], workers: int,
                 progress: Callable[[int, int], None] | None) -> Iterator[Measures]:
    """Measures of every step, in order; `workers` threads each measure one checkpoint at a time
    (torch releases the GIL inside ops, so the threads overlap their arithmetic)."""

    def one(step: int) -> Measures:
        params, acts = known.get(step, (None, None))
        return an.measure(step, params if params is not None else run.params(step), acts)

    torch.set_num_threads(1)
    with ThreadPoolExecutor(workers, thread_name_prefix="grokscope-analyze") as pool:
        for i, m in enumerate(pool.map(one, steps)):
            yield m
            if progress is not None:
                progress(i + 1, len(steps))


def _analyze(run_or_path: Any, threshold: float, key_rule: KeyRule | None, phase_rule: PhaseRule,
             max_checkpoints: int | None, n_show: int, progress: Callable[[int, int], None] | None,
             workers: int) -> Analysis:
    t0 = time.perf_counter()
    run = open_run(run_or_path)
    cfg: RunConfig = run.config
    task = run.task
    rule = KeyRule(**{**(key_rule.to_dict() if key_rule else {}), "threshold": threshold})
    steps = _select_steps(list(run.steps), max_checkpoints)
    if not steps:
        raise ValueError("the run has no checkpoints to analyse")
    an = CheckpointAnalyzer(cfg.model, task, rule)
    g = an.group

    final_step = steps[-1]
    final_params = run.params(final_step)
    final_acts = an.forward(final_params)
    keys = an.derive_keys(final_acts)
    an.set_keys(keys.freqs)
    log.info("key frequencies %s (logit share >= %.4f, >= %d neurons)", keys.freqs, keys.share_needed, keys.neurons_needed)

    rows, emb_rows, circ_rows = [], [], []
    final_m = None
    tok = np.arange(task.p)
    for m in _measure_all(an, run, steps, {final_step: (final_params, final_acts)}, workers, progress):
        step = m.row["step"]
        rows.append(m.row)
        emb_rows.append(pd.DataFrame({"step": step, "freq": np.arange(m.embed_norms.size), "norm": m.embed_norms}))
        for k, xy in m.circles.items():
            circ_rows.append(pd.DataFrame({"step": step, "freq": k, "token": tok, "cos": xy[:, 0], "sin": xy[:, 1]}))
        if step == final_step:
            final_m = m
    prog = pd.DataFrame(rows)
    emb = pd.concat(emb_rows, ignore_index=True)
    emb = emb.astype({"step": "int64", "freq": "int64", "norm": "float64"})
    circ = (pd.concat(circ_rows, ignore_index=True) if circ_rows
            else pd.DataFrame({"step": pd.Series(dtype="int64"), "freq": pd.Series(dtype="int64"),
                               "token": pd.Series(dtype="int64"), "cos": pd.Series(dtype="float64"),
                               "sin": pd.Series(dtype="float64")}))

    # phases and grokking from the logged metrics (denser than the checkpoints); else from progress
    metrics = run.metrics if run.metrics is not None and len(run.metrics) else prog
    phases: Phases = detect_phases(metrics, phase_rule)

    fit = an.logit_fit(final_acts.logits)
    tensors, meta, extra = _final_tensors(an, final_params, final_acts, keys, fit, final_step, n_show)
    fr = final_m.row
    final = {k: fr[k] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "restricted_loss_train",
                                "restricted_loss_test", "restricted_acc_test", "excluded_loss_train",
                                "gini_W_E", "gini_W_L", "attn_periodicity", "frac_neurons_single_frequency",
                                "sq_norm_total")}
    final["excluded_loss_train_by_freq"] = {str(k): fr[f"excluded_loss_train_k{k}"] for k in keys.freqs}
    counts = keys.neuron_count
    clusters = {str(k): int(counts[k]) for k in range(1, counts.size) if counts[k] > 0}
    clusters["unclustered"] = int(counts[0]) if final_acts.neurons is not None else 0
    order = np.argsort(-keys.logit_share)[:10]
    summary = {
        "format": FORMAT,
        "task": dataclasses.asdict(cfg.task),
        "group": g.describe(),
        "final_step": int(final_step),
        "n_checkpoints": len(steps),
        "grokking_step": phases.grokking_step,
        "key_frequencies": keys.freqs,
        "structure": "fourier" if keys.freqs else "none",
        "neuron_clusters": clusters,
        "frac_neurons_single_frequency": fr["frac_neurons_single_frequency"],
        "logit_fit_variance_explained": fit["variance_explained"] if keys.freqs else 0.0,
        "logit_fit": {"amplitudes": {str(k): v for k, v in fit["amplitudes"].items()}, "loss": fit["loss"],
                      "variance_explained": fit["variance_explained"] if keys.freqs else 0.0},
        "phases": phases.boundaries(),
        "final": final,
        "key_frequency_evidence": {
            "rule": rule.to_dict(), "logit_share_needed": keys.share_needed, "neurons_needed": keys.neurons_needed,
            "top_logit_share": {str(int(k)): float(keys.logit_share[k]) for k in order if k > 0},
            "neurons_per_freq": {str(k): int(counts[k]) for k in range(1, counts.size) if counts[k] > 0},
        },
        "phase_rule": phase_rule.to_dict(),
        "threshold": threshold,
        **extra,
        "elapsed_s": time.perf_counter() - t0,
    }
    log.info("analysed %d checkpoints in %.1f s", len(steps), summary["elapsed_s"])
    return Analysis(_clean(summary), prog, emb, circ, tensors, meta)


def _final_tensors(an: CheckpointAnalyzer, params: dict[str, Tensor], acts, keys, fit: dict, step: int,
                   n_show: int) -> tuple[dict[str, Tensor], dict[str, str], dict]:
    g = an.group
    t: dict[str, Tensor] = {}
    Lg = an.group_logits(acts.logits)
    t["logits_fourier_norm"] = logits_fourier_norm(g, Lg).float()
    t["group_tokens"] = torch.as_tensor(g.tokens, dtype=torch.int64)
    t["key_frequencies"] = torch.as_tensor(keys.freqs, dtype=torch.int64)
    t["logit_share"] = torch.as_tensor(keys.logit_share, dtype=torch.float32)
    t["embed_fourier_norm"] = torch.as_tensor(an.embed_norms(params), dtype=torch.float32)
    t["attn_pattern"] = an.attn_to_x(acts.pattern).float().contiguous()
    t["logit_fit_amplitude"] = torch.as_tensor([fit["amplitudes"].get(k, 0.0) for k in keys.freqs], dtype=torch.float32)
    extra: dict = {}
    if acts.neurons is not None:
        share = an.neuron_shares(acts.neurons)
        assign = neuron_assignment(share, an.rule.threshold)
        t["neuron_freq_frac"] = torch.as_tensor(share, dtype=torch.float32)
        t["neuron_cluster"] = torch.as_tensor(assign, dtype=torch.int64)
        show: list[int] = []
        for k in keys.freqs:
            show.append(int(np.argmax(share[:, k])))
        for j in range(share.shape[0]):
            if len(show) >= max(n_show, len(keys.freqs)):
                break
            if j not in show:
                show.append(j)
        grid = an.neuron_grid(acts.neurons)
        t["neuron_acts_index"] = torch.as_tensor(show, dtype=torch.int64)
        t["neuron_acts"] = grid[torch.as_tensor(show)].float().contiguous()
        W_L = an.W_L(params)
        t["W_L_fourier_norm"] = torch.as_tensor(an.W_L_norms(W_L), dtype=torch.float32)
        labels, norms = W_L_cluster_norms(W_L, g, assign)
        t["W_L_cluster_freq"] = torch.as_tensor(labels, dtype=torch.int64)
        t["W_L_cluster_fourier_norm"] = torch.as_tensor(norms, dtype=torch.float32)
        own = {}
        for c, row in zip(labels, norms):
            if c > 0:
                tot = float(np.sqrt((row[1:] ** 2).sum()))
                own[str(int(c))] = float(row[c] ** 2 / tot**2) if tot > 0 else None
        extra["W_L_cluster_own_freq_share"] = own
    meta = {"format": FORMAT, "step": str(step), "p": str(an.p), "op": an.task.cfg.op, "group": g.kind,
            "group_n": str(g.n), "generator": str(g.generator)}
    return {k: v.contiguous() for k, v in t.items()}, meta, extra


def write_analysis(result: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write the five files atomically into out_dir; returns their paths."""
    from safetensors.torch import save as st_save

    from grokscope.io import atomic_write_bytes, atomic_write_json, atomic_write_parquet

    out = Path(out_dir)
    paths = {
        "summary": out / "summary.json", "progress": out / "progress.parquet",
        "embed_fourier": out / "embed_fourier.parquet", "circles": out / "circles.parquet",
        "final": out / "final.safetensors",
    }
    atomic_write_parquet(paths["progress"], result.progress)
    atomic_write_parquet(paths["embed_fourier"], result.embed_fourier)
    atomic_write_parquet(paths["circles"], result.circles)
    atomic_write_bytes(paths["final"], st_save(result.final_tensors, metadata=result.final_meta))
    atomic_write_json(paths["summary"], result.summary)  # last: its presence marks a complete analysis
    return paths


def analyze_run(run_or_path: Any, threshold: float = 0.85, out_dir: str | Path | None = None,
                **kwargs: Any) -> dict:
    """Analyse a run and write RUN/analysis/ (or out_dir); returns the summary dict.

    kwargs go to `analyze` (key_rule, phase_rule, max_checkpoints, n_show, progress, threads).
    """
    run = open_run(run_or_path)
    result = analyze(run, threshold=threshold, **kwargs)
    if out_dir is None:
        path = getattr(run, "path", None)
        if path is None:
            raise ValueError("an in-memory run has no directory: pass out_dir")
        out_dir = Path(path) / "analysis"
    write_analysis(result, out_dir)
    log.info("wrote %s", out_dir)
    return result.summary


def progress_measures(run_or_path: Any, threshold: float = 0.85, **kwargs: Any) -> pd.DataFrame:
    """One row per checkpoint with every progress measure (progress.parquet's columns), for notebooks."""
    return analyze(run_or_path, threshold=threshold, **kwargs).progress


def load_analysis(run_path: str | Path) -> dict[str, Any]:
    """Read RUN/analysis/ back: {'summary': dict, 'progress': DataFrame, 'embed_fourier': DataFrame,
    'circles': DataFrame, 'final': {name: Tensor}}."""
    from safetensors.torch import load_file

    from grokscope.io import read_json

    d = Path(run_path)
    if (d / "analysis").is_dir():
        d = d / "analysis"
    return {
        "summary": read_json(d / "summary.json"),
        "progress": pd.read_parquet(d / "progress.parquet"),
        "embed_fourier": pd.read_parquet(d / "embed_fourier.parquet"),
        "circles": pd.read_parquet(d / "circles.parquet"),
        "final": load_file(str(d / "final.safetensors")),
    }
