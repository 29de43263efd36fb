"""Sweep specs: a base config, the fields to vary, and the seeds, expanded into trials.

    name: phase diagram                       # a label (free text)
    preset: tiny                              # the base config: a preset, a config file, dotted overrides
    config: base.yaml                         #   (relative to the spec file); any of the three
    set: {task.p: 41, train.epochs: 3000}
    grid: {task.frac_train: [0.2, 0.4], optim.weight_decay: [0.3, 1, 3]}    # every combination
    trials: [{optim.lr: 1e-3}, {optim.lr: 3e-3}]                            # explicit points
    random: {n: 8, seed: 0, fields: {optim.lr: {log_uniform: [1e-4, 1e-2]},
                                     optim.weight_decay: {uniform: [0.1, 3]}, model.act_fn: {choice: [relu, gelu]}}}
    seeds: 0-2                                # train.seed values: "0-2", "0,5" or a list (default: the base's)
    analyze: false                            # also analyse each trial after training

Trials are the product grid x trials x random samples x seeds, in that order; each is the base
config with its overrides applied, built and checked before anything runs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grokscope.config import ConfigError, RunConfig, apply_overrides, load_config_file, merge_config, parse_seeds
from grokscope.presets import get_preset

SPEC_KEYS = ("name", "preset", "config", "set", "grid", "trials", "random", "seeds", "analyze")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


@dataclass(frozen=True)
class Trial:
    id: str  # t0000, t0001, ...: also the run directory's name under the sweep folder
    overrides: dict[str, Any]  # the swept values (dotted keys), train.seed included
    config: RunConfig = field(repr=False)


@dataclass(frozen=True)
class SweepSpec:
    raw: dict  # the spec as written (recorded in sweep.json)
    name: str
    base: RunConfig
    trials: tuple[Trial, ...]
    swept: tuple[str, ...]  # the fields that vary across trials, train.seed last
    analyze: bool


def _mapping(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping (got {type(value).__name__})")
    return value


def _sample(rng: np.random.Generator, key: str, dist: Any) -> Any:
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ConfigError(key, f"must be one of {{{', '.join(f'{d}: ...' for d in DISTRIBUTIONS)}}} (got {dist!r})")
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(key, f"choice needs a non-empty list (got {args!r})")
        return args[int(rng.integers(len(args)))]
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args) and args[0] <= args[1]):
        raise ConfigError(key, f"{kind} needs [low, high] with low <= high (got {args!r})")
    lo, hi = args
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "int_uniform":
        return int(rng.integers(int(lo), int(hi) + 1))
    if lo <= 0:
        raise ConfigError(key, f"log_uniform needs low > 0 (got {args!r})")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _points(raw: dict) -> list[dict]:
    grid = _mapping(raw, "grid")
    for k, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{k}", f"must be a non-empty list of values (got {values!r})")
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    listed = raw.get("trials") or [{}]
    if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
        raise ConfigError("trials", "must be a list of mappings of dotted keys to values")
    combos = [{**c, **t} for c in combos for t in listed]
    rnd = _mapping(raw, "random")
    if rnd:
        unknown = set(rnd) - {"n", "seed", "fields"}
        if unknown:
            raise ConfigError(f"random.{sorted(unknown)[0]}", "unknown key (allowed: n, seed, fields)")
        n = rnd.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("random.n", f"must be an integer >= 1 (got {n!r})")
        rng = np.random.default_rng(rnd.get("seed", 0))
        fields = _mapping(rnd, "fields")
        samples = [{k: _sample(rng, f"random.fields.{k}", d) for k, d in fields.items()} for _ in range(n)]
        combos = [{**c, **s} for c in combos for s in samples]
    return combos


def load_spec(source: str | Path | dict, overrides: dict | None = None) -> SweepSpec:
    """A sweep spec from a YAML / JSON file or a dict; every trial's config is built and checked.

    `overrides` (the CLI's --set) join the spec's `set` after its own keys, so the sweep records them
    (sweep.json's spec) and a resume with other overrides is refused like any other changed spec."""
    base_dir = Path(".")
    if isinstance(source, dict):
        raw = source
    else:
        base_dir = Path(source).parent
        raw = load_config_file(source)
    if not isinstance(raw, dict):
        raise ConfigError("SPEC", "must be a mapping")
    for key in raw:
        if key not in SPEC_KEYS:
            raise ConfigError(str(key), f"unknown sweep key (allowed: {', '.join(SPEC_KEYS)})")
    if overrides:
        raw = {**raw, "set": {**_mapping(raw, "set"), **overrides}}
    base = get_preset(raw["preset"]) if raw.get("preset") else RunConfig()
    if raw.get("config"):
        path = Path(raw["config"])
        base = merge_config(base, load_config_file(path if path.is_absolute() else base_dir / path))
    base = apply_overrides(base, _mapping(raw, "set"))
    seeds = parse_seeds(raw["seeds"]) if "seeds" in raw else [base.train.seed]
    analyze = raw.get("analyze", False)
    if not isinstance(analyze, bool):
        raise ConfigError("analyze", f"must be true or false (got {analyze!r})")
    name = str(raw.get("name") or "sweep")
    points = _points(raw)
    trials = []
    for point, seed in itertools.product(points, seeds):
        overrides = {**point, "train.seed": seed}
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())
        cfg = apply_overrides(base, {**overrides, "name": f"{name}: {label}"})
        trials.append(Trial(f"t{len(trials):04d}", overrides, cfg))
    keys = list(dict.fromkeys(k for t in trials for k in t.overrides))
    swept = tuple(k for k in keys if k != "train.seed" and len({repr(t.overrides.get(k)) for t in trials}) > 1)
    swept += ("train.seed",) if len(seeds) > 1 else ()
    return SweepSpec(raw, name, base, tuple(trials), swept, analyze)
