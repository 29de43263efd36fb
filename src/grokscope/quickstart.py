"""`grokscope demo`: the canonical run trained past grokking, analysed and reported, in one call."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from grokscope.analysis import analyze
from grokscope.presets import get_preset
from grokscope.report import write_report
from grokscope.trainer import train

log = logging.getLogger(__name__)

# The demo trains the canonical config past grokking (epoch 8170 with seed 0) and clean-up (~9.7k),
# then stops: 12k of the preset's 40k epochs, 4.5-7 minutes on a 2-core CPU.
# `grokscope train --preset nanda2023` runs the full length.
DEMO_EPOCHS = 12000


def demo_config(overrides: dict[str, Any] | None = None):
    cfg = get_preset("nanda2023").replace(**{"train.epochs": DEMO_EPOCHS, "name": "demo: nanda2023"})
    return cfg.replace(**overrides) if overrides else cfg


def demo(out: str | Path | None = None, overrides: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Train `nanda2023` for DEMO_EPOCHS epochs into `out` (default runs/demo-<time>), analyse it and
    write its report; returns the run directory (RUN/analysis/ and RUN/report.html are in it).
    `overwrite` replaces a run already in `out`."""
    cfg = demo_config(overrides)
    out = Path(out) if out is not None else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    train(cfg, out, overwrite=overwrite)
    analyze(out)
    write_report([out])
    log.info("demo written to %s", out)
    return out
