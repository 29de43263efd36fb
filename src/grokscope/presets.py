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
    # --- the phase-change tasks of seeds 003/004 (docs/tasks.md has the sources of each number) ---
    # 5-digit addition on a 1-layer transformer (seed 004), infinite data: a phase change per output
    # digit. The model and AdamW(lr 1e-3, betas 0.9/0.98) are the canonical run's; batch 256 fresh
    # sums per step and weak decay (0.1: with infinite data nothing needs forgetting).
    "digit_add5_infinite": {"task.name": "digit_add", "task.n_digits": 5, "train.batch_size": 256,
                            "optim.weight_decay": 0.1, "train.epochs": 4000, "train.eval_every": 20,
                            "train.checkpoint_every": 200},
    # ... and limited data: seed 004 groks on 700 examples (its hand-found crossover) with weight decay;
    # full batch, wd 1 as the canonical run. Measured here (2026-12-02, stopped at step 10400): train
    # accuracy 0.99 at step 250, test accuracy 0.16 at 2000, 0.5 at 5050, 0.88 at 10400 (docs/tasks.md).
    "digit_add5_finite": {"task.name": "digit_add", "task.n_digits": 5, "task.n_train": 700, "train.epochs": 20000,
                          "train.checkpoint_every": 200},
    # Repeated subsequences (seed 004): 2-layer attention-only, d_model 48, 4 heads of 12, vocabulary
    # 128, seq_len 85, subseq_len 16, 3 repeats (the saved run behind seed 004), infinite data.
    "repeat_subseq": {"task.name": "repeat_subseq", "model.n_layers": 2, "model.attn_only": True, "model.d_model": 48,
                      "model.n_heads": 4, "model.d_head": 12, "train.batch_size": 64, "optim.weight_decay": 0.1,
                      "train.epochs": 3000, "train.eval_every": 20, "train.checkpoint_every": 100},
    # Max element / skip trigrams (seed 004): 1-layer attention-only, START + 11 entries + END,
    # one of 10 large values (10..19) to find; infinite data.
    "skip_trigram": {"task.name": "max_element", "model.attn_only": True, "train.batch_size": 128,
                     "optim.weight_decay": 0.1, "train.epochs": 3000, "train.eval_every": 10, "train.checkpoint_every": 100},
    # x o y in S_5 (seed 003, after Power et al. 2022): the canonical 1-layer model and AdamW (wd 1)
    # in minibatches of 512 (openai/grok's batch). Full batch on half the pairs had not generalised
    # after 13600 steps. `grokscope crossover` over frac_train with this config bracketed the
    # crossover in (0.413, 0.440) (docs/tasks.md); its trial at 0.4400558683966967 (the geometric
    # midpoint, kept exact so this preset is that run) groks: train accuracy 0.99 at step 3300, test
    # 0.99 at 9200, through the standard and sign irreps. So close to the crossover the split matters:
    # frac_train 0.44 (another split) had not generalised by step 14750.
    "s5": {"task.name": "perm_compose", "task.n": 5, "task.frac_train": 0.4400558683966967, "train.batch_size": 512,
           "train.epochs": 1500, "train.eval_every": 50, "train.checkpoint_every": 500},
    # Sparse parity (Barak et al. 2022): parity of 3 hidden bits of 20, infinite data, batch 256; the
    # loss sits at log 2 for ~600 steps, then falls to 0.08 within 20 (measured, docs/tasks.md). With
    # 40 bits (Barak et al.'s example size) this config stayed at log 2 for all 10000 steps.
    "sparse_parity": {"task.name": "sparse_parity", "task.n_bits": 20, "task.k": 3, "train.batch_size": 256,
                      "optim.weight_decay": 0.1, "train.epochs": 10000, "train.eval_every": 20,
                      "train.checkpoint_every": 200},
    # x + y and x - y mod 59 in one model (seed 004's multi-algorithm question), 30 % of the 2 x 59^2
    # rows, full batch, the canonical model and optimiser.
    "modular_multi": {"task.name": "modular_multi", "task.ops": ["add", "sub"], "task.p": 59, "task.frac_train": 0.3,
                      "train.epochs": 20000, "train.checkpoint_every": 200},
    # seed 002's chunked MLP on x + y mod 113: 8 chunks of 2, 32 SiLU neurons per chunk, 70 % of the pairs,
    # AdamW weight decay standing in for the seed's weight-norm penalty; checkpoints every 10 steps so
    # that formation steps are resolved (docs/models.md).
    "chunked_mlp": {"model.name": "mlp", "model.embed": "chunked", "model.d_embed": 16, "model.d_mlp": 32,
                    "model.act_fn": "silu", "task.frac_train": 0.7, "train.batch_size": 256, "train.epochs": 100,
                    "optim.lr": 0.01, "optim.weight_decay": 0.1, "train.checkpoint_every": 10, "train.eval_every": 10},
    # seed 002's two redundant features: a sigmoid MLP on 8x8 digits overlaid with class patterns (needs the
    # `digits` extra, scikit-learn).
    "two_feature_digits": {"task.name": "two_feature_digits", "model.name": "mlp", "model.d_mlp": 128,
                           "model.act_fn": "sigmoid", "train.epochs": 1000, "train.batch_size": 128, "optim.lr": 1e-3,
                           "optim.weight_decay": 0.1, "train.eval_every": 20, "train.checkpoint_every": 200},
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
