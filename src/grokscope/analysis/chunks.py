"""Circuit formation in a chunked MLP (seed 002): each chunk's circle over training, and when it forms.

For every checkpoint and chunk c, the chunk's p token points W_E[x, 2c:2c+2] (tokens in group
order: x itself for add / sub) get their circularity and frequency (grokscope.analysis.formation);
each chunk's formation step follows from its curve, and the formations of the run are grouped
within `window` steps (pairs, triples). `grokscope formation RUN ...` tests many runs' formations
against a Poisson process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from grokscope.analysis.formation import CoincidenceTest, circularity, coincidence_test, formation_step, group_counts
from grokscope.analysis.modular.fourier import group_for
from grokscope.analysis.registry import AnalysisOutput
from grokscope.config import ConfigError
from grokscope.io import RunDirError, atomic_write_json


class ChunkFormation:
    """Circularity and frequency of every embedding chunk at every checkpoint; formation steps."""

    name = "formation"
    headline = ("chunks_formed", "formation_steps")

    @classmethod
    def applies_to(cls, run: Any) -> str | None:
        m = run.config.model
        if m.name != "mlp" or getattr(m, "embed", None) != "chunked":
            return "the model is not a chunked MLP (model.name=mlp, model.embed=chunked)"
        if getattr(run.task, "name", None) != "modular":
            return f"the task is {getattr(run.task, 'name', None)!r}, not modular arithmetic"
        return None

    def __init__(self, run: Any, steps: list[int], circle_threshold: float = 0.9, window: int | None = None,
                 n_frames: int = 40) -> None:
        """circle_threshold: the circularity that counts as a circle; window: formations this many steps
        apart or fewer come together (default 2 % of the last step); n_frames: checkpoints whose points are kept."""
        if not 0.0 < circle_threshold <= 1.0:
            raise ConfigError("circle_threshold", f"must be in (0, 1] (got {circle_threshold})")
        if window is not None and window < 0:
            raise ConfigError("window", f"must be an integer >= 0 (got {window})")
        self.threshold = circle_threshold
        self.window = window if window is not None else max(1, round(0.02 * steps[-1]))
        self.tokens = np.asarray(group_for(run.task.cfg.op, run.task.p).tokens)
        self.p = run.task.p
        idx = np.unique(np.linspace(0, len(steps) - 1, min(n_frames, len(steps))).round().astype(int))
        self.frames = {steps[i] for i in idx}

    def points(self, params: dict[str, Tensor]) -> np.ndarray:
        """[n_chunks, p, 2] every chunk's token points, tokens in group order."""
        W = params["embed.W_E"].double().cpu().numpy()[self.tokens]
        return W.reshape(len(self.tokens), -1, 2).transpose(1, 0, 2)

    def measure(self, step: int, params: dict[str, Tensor]) -> dict[str, Any]:
        pts = self.points(params)
        circ, freq = circularity(pts)
        return {"step": step, "circ": circ, "freq": freq, "points": pts if step in self.frames else None}

    def finalize(self, records: list[dict[str, Any]]) -> AnalysisOutput:
        steps = np.array([r["step"] for r in records])
        circ = np.stack([r["circ"] for r in records])  # [T, chunks]
        freq = np.stack([r["freq"] for r in records])
        n_chunks = circ.shape[1]
        progress = pd.DataFrame({"step": steps.astype("int64")})
        for c in range(n_chunks):
            progress[f"circularity/c{c}"] = circ[:, c]
            progress[f"circle_freq/c{c}"] = freq[:, c].astype("int64")
        progress["chunks_circular"] = (circ >= self.threshold).sum(1).astype("int64")
        formed = {}
        for c in range(n_chunks):
            step, k = formation_step(steps, circ[:, c], freq[:, c], self.threshold)
            formed[str(c)] = {"step": step, "freq": k, "final_circularity": float(circ[-1, c])}
        times = np.array([v["step"] for v in formed.values() if v["step"] is not None])
        frames = [pd.DataFrame({"step": r["step"], "chunk": np.repeat(np.arange(n_chunks), self.p),
                                "token": np.tile(self.tokens, n_chunks), "x": r["points"][..., 0].ravel(),
                                "y": r["points"][..., 1].ravel()}) for r in records if r["points"] is not None]
        summary = {
            "chunks": n_chunks, "chunks_formed": int(len(times)),
            "formation_steps": sorted(int(t) for t in times),
            "chunk_formation": formed,
            "formation_groups": group_counts(times, self.window),
            "rule": {"circle_threshold": self.threshold, "window": self.window},
            "checkpoints": [int(s) for s in steps],
        }
        return AnalysisOutput(summary, {"progress": progress, "chunk_points": pd.concat(frames, ignore_index=True)})


def formation_test(runs: Any, window: int | None = None, n_sims: int = 10000, seed: int = 0,
                   out: str | Path | None = None) -> CoincidenceTest:
    """The coincidence test over analysed runs (`grokscope formation RUN...`).

    runs: run paths or Runs with a `formation` analysis; a folder of runs (an ensemble's OUT, a
    sweep) stands for its runs. window: default the first run's analysis window. out: also write
    the result there as JSON (atomically). Each run's formations are snapped to its own checkpoints
    in the simulation.
    """
    from grokscope.analysis.core import load_analysis
    from grokscope.runstore import expand_runs

    if isinstance(runs, (str, Path)) or not isinstance(runs, (list, tuple)):
        runs = [runs]
    for run in runs:
        if isinstance(run, (str, Path)) and not Path(run).is_dir():
            raise RunDirError(f"{run} is not a folder (a run directory or a folder of runs)")
    paths = expand_runs([run if isinstance(run, (str, Path)) else run.path for run in runs])
    summaries = []
    for path in paths:
        summary = load_analysis(path, "formation").summary
        if summary is None:
            raise ConfigError("runs", f"{path} has no readable analysis/formation/summary.json; run `grokscope analyze {path}`")
        summaries.append(summary)
    result = coincidence_from_summaries(summaries, window, n_sims=n_sims, seed=seed)
    for row, path in zip(result.per_run, paths):
        row["run"] = str(path)
    if out is not None:
        atomic_write_json(out, result.to_dict())
    return result


def coincidence_from_summaries(summaries: list[dict], window: int | None = None, n_sims: int = 10000,
                               seed: int = 0) -> CoincidenceTest:
    """The coincidence test from `formation` summaries (what the test and the report both read)."""
    if not summaries:
        raise ConfigError("runs", "give at least one analysed run")
    w = window if window is not None else summaries[0]["rule"]["window"]
    if w < 0:
        raise ConfigError("window", f"must be an integer >= 0 (got {w})")
    if n_sims < 1:
        raise ConfigError("n_sims", f"must be an integer >= 1 (got {n_sims})")
    times = [np.array(s["formation_steps"], dtype=float) for s in summaries]
    grids = [np.array(s["checkpoints"], dtype=float) for s in summaries]
    return coincidence_test(times, w, grids, n_sims=n_sims, seed=seed)
