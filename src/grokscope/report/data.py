"""Everything a report shows about one run, read once from its directory.

Each source (metrics, the analysis files) is read on its own, so a missing or unreadable file costs
only the sections that need it: `RunData.missing` says why a source is absent and the report shows
that as a note. Nothing here computes an analysis; the report only reads what `grokscope analyze`
wrote (formats in docs/analysis.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

ANALYSIS_FILES = {
    "summary": "summary.json",
    "progress": "progress.parquet",
    "embed_fourier": "embed_fourier.parquet",
    "circles": "circles.parquet",
    "final": "final.safetensors",
}


class MissingData(LookupError):
    """A figure's data is absent; the message is a short note fit to show a reader."""


@dataclass
class RunData:
    """One run's report inputs. Absent sources are None (final: {}), with the reason in `missing`."""

    path: Path | None
    name: str
    config: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    summary: dict | None = None
    progress: pd.DataFrame | None = None
    embed_fourier: pd.DataFrame | None = None
    circles: pd.DataFrame | None = None
    final: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def need(self, source: str) -> Any:
        """The source, or MissingData with the reason it is absent (for figure functions)."""
        value = getattr(self, source)
        if value is None:
            raise MissingData(self.missing.get(source, f"no {source} data"))
        return value

    def need_tensor(self, name: str) -> np.ndarray:
        if name not in self.final:
            reason = self.missing.get("final") or f"analysis/final.safetensors has no tensor {name!r}"
            raise MissingData(reason)
        return self.final[name]

    @property
    def phases(self) -> dict:
        return dict((self.summary or {}).get("phases") or {})

    @property
    def key_frequencies(self) -> list[int]:
        return [int(k) for k in (self.summary or {}).get("key_frequencies") or []]

    @property
    def is_mul_group(self) -> bool:
        """True when grids are laid out by discrete log (mul / div), not by token."""
        group = (self.summary or {}).get("group") or {}
        return group.get("generator") is not None


def _read(path: Path, reader) -> tuple[Any, str | None]:
    """(value, None) or (None, reason) for one analysis file."""
    if not path.is_file():
        return None, f"{path.name} not found: run `grokscope analyze {path.parent.parent}` first"
    try:
        return reader(path), None
    except Exception as err:  # a half-written or foreign file must not stop the whole report
        log.warning("cannot read %s: %s", path, err)
        return None, f"{path.name} could not be read ({err.__class__.__name__})"


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def load_run_data(src: Any) -> RunData:
    """RunData from a run directory path, a `grokscope.run.Run`, or a RunData (returned as is).

    A path that is not a run directory raises RunDirError; absent analysis files do not.
    """
    if isinstance(src, RunData):
        return src
    from grokscope.run import Run, load_run

    run = src if isinstance(src, Run) else load_run(src)
    data = RunData(path=Path(run.path), name=str(run.name), config=run.config.to_dict())
    try:
        data.metrics = run.metrics
    except Exception as err:
        log.warning("cannot read metrics of %s: %s", run.path, err)
        data.missing["metrics"] = f"metrics.parquet could not be read ({err.__class__.__name__})"
    adir = Path(run.path) / "analysis"
    readers = {
        "summary": lambda p: json.loads(p.read_text()),
        "progress": pd.read_parquet,
        "embed_fourier": pd.read_parquet,
        "circles": pd.read_parquet,
        "final": _read_safetensors,
    }
    for source, fname in ANALYSIS_FILES.items():
        value, reason = _read(adir / fname, readers[source])
        if reason:
            data.missing[source] = reason
        elif value is not None:
            setattr(data, source, value)
    if data.summary is not None and not isinstance(data.summary, dict):
        data.summary, data.missing["summary"] = None, "summary.json is not a JSON object"
    if data.circles is not None and data.circles.empty:
        data.circles = None
        data.missing["circles"] = "no key frequencies, so no embedding circles (the run has no Fourier circuit)"
    return data
