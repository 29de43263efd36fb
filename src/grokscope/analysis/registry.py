"""The analysis registry: what an analysis is to the driver, and the list the driver walks.

An analysis is a class with the lifecycle of devinterp's callbacks:

    name = "fourier"                                   # its folder: RUN/analysis/<name>/
    applies_to(run) -> reason | None                   # classmethod: why it cannot analyse this run
    default_for(run) -> bool                           # optional classmethod: False = only when asked by name
    __init__(run, steps, **options)                    # prepare: read what it needs (steps: those to measure)
    measure(step, params) -> record                    # one checkpoint; called from worker threads
    finalize(records) -> AnalysisOutput                # records in step order -> files

Options are keyword arguments of `__init__`; `grokscope.analyze(run, **options)` hands each
analysis the ones its `__init__` accepts. `headline` names the summary keys copied into the
run-level RUN/analysis/summary.json (None: all of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd
from torch import Tensor


@dataclass
class AnalysisOutput:
    """What one analysis writes: summary.json, one parquet per table ("progress": one row per
    checkpoint with a `step` column), and tensors of the final checkpoint (final.safetensors)."""

    summary: dict
    tables: dict[str, pd.DataFrame]
    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def progress(self) -> pd.DataFrame:
        return self.tables["progress"]


class Analysis(Protocol):
    name: ClassVar[str]
    headline: ClassVar[tuple[str, ...] | None]

    @classmethod
    def applies_to(cls, run: Any) -> str | None: ...
    def measure(self, step: int, params: dict[str, Tensor]) -> Any: ...
    def finalize(self, records: list[Any]) -> AnalysisOutput: ...


ANALYSES: dict[str, type] = {}


def register_analysis(cls: type) -> type:
    """Add an analysis class (usable as a decorator); a later class of the same name replaces it."""
    ANALYSES[cls.name] = cls
    return cls


def unregister_analysis(name: str) -> None:
    ANALYSES.pop(name, None)
