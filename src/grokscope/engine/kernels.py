"""Pick the fastest of equivalent formulations of one product, by timing them once per machine.

The same BLAS call can run at a third of its usual rate on another CPU (issue: a [B, 113] x [113,
512] product into a strided block ran at 33 GFLOP/s on an AMD EPYC, against 93 GFLOP/s for the
same product into a fresh tensor). Where the engine has formulations that give bit-identical
results (checked here before any is timed), `fastest` times each a few times on the real shapes
and keeps the winner for this machine in ~/.cache/grokscope/kernels.json (keyed by CPU model,
vector capability, thread count, torch version and shapes), so later processes skip the timing.
Set GROKSCOPE_KERNELS=off (or train with `train.deterministic`, which calls `pin_first`) to always
take the first formulation, untimed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import torch

from grokscope.cpu import cpu_model

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grokscope" / "kernels.json"
_chosen: dict[str, str] = {}
_pinned = False


def pin_first(on: bool = True) -> None:
    """Process-wide: always take each product's first formulation, untimed (grokscope.determinism)."""
    global _pinned
    _pinned = on


def _key(name: str, shapes: tuple) -> str:
    return "|".join([name, cpu_model(), torch.backends.cpu.get_cpu_capability(), f"{torch.get_num_threads()} threads",
                     torch.__version__, str(shapes)])


def _load() -> dict[str, str]:
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _save(choices: dict[str, str]) -> None:
    from grokscope.io import atomic_write_json

    try:
        atomic_write_json(CACHE, choices)
    except OSError as err:  # a read-only home costs only the re-timing next time
        log.debug("kernel choices not cached: %s", err)


def fastest(name: str, variants: dict[str, Callable[[], torch.Tensor]], shapes: tuple, reps: int = 5) -> str:
    """The name of the fastest variant (each a no-argument call returning the result) for these shapes.

    All variants must give bit-identical results; one that does not is dropped with a warning.
    """
    first = next(iter(variants))
    if _pinned or os.environ.get("GROKSCOPE_KERNELS") == "off" or len(variants) == 1:
        return first
    key = _key(name, shapes)
    if key in _chosen:
        return _chosen[key]
    cached = _load()
    if cached.get(key) in variants:
        _chosen[key] = cached[key]
        return cached[key]
    ref = variants[first]()
    times = {}
    for v, fn in variants.items():
        if not torch.equal(fn(), ref):
            log.warning("kernel %s: variant %s differs from %s; not used", name, v, first)
            continue
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[v] = best
    choice = min(times, key=times.get)
    log.info("kernel %s %s: %s", name, shapes, ", ".join(f"{v} {t * 1e3:.2f} ms" for v, t in times.items()))
    _chosen[key] = choice
    _save({**_load(), key: choice})
    return choice
