"""Named configurations, and `make_config`, which composes a preset, a file and overrides.

`nanda2023` is the canonical run of "Progress measures for grokking via mechanistic
interpretability" (Nanda et al., ICLR 2023).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grokscope.config import ConfigError, RunConfig, apply_overrides, load_config_file, merge_config

# Each preset is a set of overrides on the defaults, so the defaults stay the single source.
PRESETS: dict[str, dict] = {
    # 1-layer transformer, x + y mod 113, 30% of pairs, full-batch AdamW(lr 1e-3, wd 1, betas 0.9/0.98).
    "nanda2023": {},
    # Grokking in well under a minute on a laptop CPU: x + y mod 31 on the canonical model, half the
    # pairs, lr 3e-3. Seed 0 memorises by step ~40 and reaches 99 % test accuracy at step 2500-2910
    # (measured in separate processes: the trajectory varies at float rounding); 4000 epochs leave room.
    "quick": {"task.p": 31, "task.frac_train": 0.5, "optim.lr": 3e-3, "train.epochs": 4000},
    # A seconds-long run for tests and smoke checks: p = 23 memorises within a few hundred steps
    # (it does not generalise: use `quick` to see grokking).
    "tiny": {
        "task.p": 23, "task.frac_train": 0.5, "model.d_model": 32, "model.n_heads": 2, "model.d_head": 16,
        "model.d_mlp": 64, "optim.lr": 3e-3, "train.epochs": 300, "train.checkpoint_every": 50,
    },
}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError("--preset", f"unknown preset {name!r} (allowed: {', '.join(PRESETS)})")
    return apply_overrides(RunConfig(), PRESETS[name])


def make_config(
    file: str | Path | None = None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Compose preset <- file <- overrides, the order the CLI applies them."""
    cfg = get_preset(preset) if preset else RunConfig()
    if file is not None:
        cfg = merge_config(cfg, load_config_file(file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg
