"""`grokscope landscape` and `grokscope llc` as Python functions: measure, then write RUN/landscape/.

    grokscope.landscape("runs/nanda2023", k=20)               # -> Curvature; RUN/landscape/hessian-train-step<S>.json
    grokscope.landscape(run, checkpoints=40, k=5)             # -> DataFrame; RUN/landscape/hessian-train.parquet
    grokscope.landscape(run, connect=(1500, 12000))          # -> Connection; connect-train-1500-12000.json
    grokscope.landscape(run, slice="pca")                    # -> dict; slice-pca-train.parquet (+ -trajectory)
    grokscope.landscape(run, circuits=("k14", "k35"))         # -> CircuitWalk; circuits-k14-k35-train.json + .parquet
    grokscope.llc(run, chains=4)                              # -> LLCEstimate; llc-train-step<S>.json + its trace
    grokscope.llc(run, checkpoints=40)                        # -> DataFrame; RUN/landscape/llc-train.parquet
    grokscope.llc(run, calibrate=True)                        # -> DataFrame; RUN/landscape/llc-calibration.parquet

Files are written atomically; `out` names another folder. Formats: docs/landscape.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from grokscope.analysis.landscape.circuits import CircuitWalk, circuit_walk
from grokscope.analysis.landscape.connectivity import Connection, connect_runs
from grokscope.analysis.landscape.hessian import Curvature, hessian, hessian_over_checkpoints
from grokscope.analysis.landscape.slices import run_slice
from grokscope.analysis.landscape.llc import LLCEstimate, calibrate as calibrate_llc, estimate_llc, llc_over_checkpoints
from grokscope.config import ConfigError
from grokscope.io import atomic_write_json, atomic_write_parquet, check_folder


def _folder(run: Any, out: str | Path | None) -> tuple[Any, Path]:
    from grokscope.run import as_run

    r = as_run(run)
    # refused now if it cannot be a folder; created by the first atomic write, so a measure that fails leaves none
    return r, check_folder(Path(out) if out is not None else Path(r.path) / "landscape")


def connect_file(con: Connection) -> str:
    """`connect-<split>-<A>-<B>.json`, or `connect-<split>-<A>-<RUN2>-<B>.json` towards another run
    (its folder's name, made safe), so that connecting one run to several others keeps each result."""
    s = con.settings
    other = "" if s["run_b"] == s["run_a"] else "-" + re.sub(r"[^A-Za-z0-9._]+", "_", Path(s["run_b"]).name)
    return f"connect-{s['split']}-{s['step_a']}{other}-{s['step_b']}.json"


def _check_checkpoints(checkpoints: int | None) -> None:
    if checkpoints is not None and checkpoints < 1:
        raise ConfigError("checkpoints", f"must be an integer >= 1 (got {checkpoints})")


def landscape(run: Any, step: int | None = None, split: str = "train", params: Sequence[str] | None = None, k: int = 20,
              trace_samples: int = 0, density_vectors: int = 0, checkpoints: int | None = None, seed: int = 0,
              device: str = "cpu", out: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
              connect: tuple[int, int] | None = None, other: Any = None, bezier: bool = True,
              curve_steps: int = 200, slice: str | None = None, grid: int | None = None, span: float | None = None,
              circuits: Sequence[str] | None = None, k_a: int = 10,
              relax_steps: int = 50) -> Curvature | pd.DataFrame | Connection | dict | CircuitWalk:
    """The Hessian at one checkpoint (`hessian`), or its top-k over `checkpoints` evenly spaced ones,
    or (connect=(step_a, step_b)) the loss barrier between two checkpoints, of this run or of `other`
    at step_b: the linear path and, with bezier, a trained Bezier curve of `curve_steps` Adam steps,
    or (slice="1d" | "2d" | "pca") a slice of the loss surface (`slices.run_slice`; pca uses
    `checkpoints` checkpoints, default 40; grid default 21, span default 1), or (circuits=(A, B), () for the run's
    two main circuits) the walk that keeps circuit A and ablates B (`circuits.circuit_walk`: `grid`
    (default 11) points over [-span, span], span default from B's curvature, `split` the circuits' examples)."""
    _check_checkpoints(checkpoints)
    r, folder = _folder(run, out)
    if circuits is not None:
        if len(circuits) not in (0, 2):
            raise ConfigError("circuits", f"name two circuits, A to keep and B to ablate, or none for the run's two "
                                          f"main ones (got {list(circuits)})")
        w = circuit_walk(r, *(circuits or (None, None)), step=step, split=split, params=params, k_a=k_a, span=span,
                         points=grid or 11, relax_steps=relax_steps, seed=seed, device=device, progress=progress)
        stem = f"circuits-{w.a}-{w.b}-{split}"
        atomic_write_parquet(folder / f"{stem}.parquet", w.walk)
        atomic_write_json(folder / f"{stem}.json", w.to_dict())
        return w
    if slice is not None:
        res = run_slice(r, slice, step, split, grid=grid or 21, span=1.0 if span is None else span, checkpoints=checkpoints or 40, seed=seed, device=device)
        atomic_write_parquet(folder / f"slice-{slice}-{split}.parquet", res["surface"])
        if "trajectory" in res:
            atomic_write_parquet(folder / f"slice-{slice}-{split}-trajectory.parquet", res["trajectory"])
        atomic_write_json(folder / f"slice-{slice}-{split}.json", {**res["settings"], "explained": res.get("explained")})
        return res
    if connect is not None:
        con = connect_runs(r, connect[0], connect[1], other=other, split=split, device=device, bezier=bezier,
                           steps=curve_steps, seed=seed)
        atomic_write_json(folder / connect_file(con), con.to_dict())
        return con
    if checkpoints is not None:
        df = hessian_over_checkpoints(r, n=checkpoints, k=k, split=split, params=params, trace_samples=trace_samples,
                                      seed=seed, device=device, progress=progress)
        atomic_write_parquet(folder / f"hessian-{split}.parquet", df)
        return df
    c = hessian(r, step, split, params, k, trace_samples=trace_samples, density_vectors=density_vectors, seed=seed,
                device=device)
    atomic_write_json(folder / f"hessian-{split}-step{c.step}.json", c.to_dict())
    return c


def llc(run: Any, step: int | None = None, split: str = "train", checkpoints: int | None = None, calibrate: bool = False,
        device: str = "cpu", out: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
        **sgld: Any) -> LLCEstimate | pd.DataFrame:
    """The LLC at one checkpoint, over `checkpoints` evenly spaced ones, or (calibrate) a sweep of eps
    and gamma at one checkpoint. sgld: chains, draws, burn_in, eps, gamma, nbeta, batch_size, seed."""
    _check_checkpoints(checkpoints)
    if calibrate and checkpoints is not None:
        raise ConfigError("calibrate", "calibrates at one checkpoint; drop checkpoints (--checkpoints)")
    r, folder = _folder(run, out)
    if calibrate:
        sgld = {k: v for k, v in sgld.items() if k not in ("eps", "gamma")}
        df = calibrate_llc(r, step, split=split, device=device, **sgld)
        atomic_write_parquet(folder / f"llc-calibration-{split}.parquet", df)
        return df
    if checkpoints is not None:
        df = llc_over_checkpoints(r, n=checkpoints, split=split, device=device, progress=progress, **sgld)
        atomic_write_parquet(folder / f"llc-{split}.parquet", df)
        return df
    est = estimate_llc(r, step, split, device, **sgld)
    atomic_write_json(folder / f"llc-{split}-step{est.step}.json", est.to_dict())
    atomic_write_parquet(folder / f"llc-{split}-step{est.step}-trace.parquet", est.trace)
    return est
