"""Everything a report shows about one run, read once through `grokscope.run.Run`.

Each source (metrics, the run-level analysis files, each analysis's folder) is read on its own, so
a missing or unreadable file costs only the sections that need it: `RunData.missing` says why a
source is absent and the report shows that as a note. Nothing here computes an analysis; the
report only reads what `grokscope analyze` wrote (formats in docs/analysis.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokscope.io import RunDirError
from grokscope.runstore import StoredAnalysis

log = logging.getLogger(__name__)


class MissingData(LookupError):
    """A figure's data is absent; the message is a short note fit to show a reader."""


@dataclass
class RunData:
    """One run's report inputs. Absent sources are None, with the reason in `missing`.

    summary / progress: the run-level RUN/analysis/summary.json and progress.parquet;
    analyses: what each analysis wrote (RUN/analysis/<name>/), by name;
    expected: the registered analyses that apply to this run, written or not.
    """

    path: Path | None
    name: str
    config: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    summary: dict | None = None
    progress: pd.DataFrame | None = None
    analyses: dict[str, StoredAnalysis] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    stale: str | None = None  # why the analysis no longer describes the run (it trained on since), or None

    def need(self, source: str) -> Any:
        """metrics, summary or progress, or MissingData with the reason it is absent (for figure functions)."""
        value = getattr(self, source)
        if value is None:
            raise MissingData(self.missing.get(source, f"no {source} data"))
        return value

    def _analysis(self, analysis: str) -> StoredAnalysis:
        if analysis not in self.analyses:
            raise MissingData(self.missing.get("summary") or f"no {analysis} analysis: run `grokscope analyze {self.path}` first")
        return self.analyses[analysis]

    def table(self, analysis: str, name: str) -> pd.DataFrame:
        a = self._analysis(analysis)
        if name not in a.tables:
            raise MissingData(a.missing.get(name) or f"{name}.parquet not found: run `grokscope analyze {self.path}` first")
        return a.tables[name]

    def tensors(self, analysis: str) -> dict[str, np.ndarray]:
        """The analysis's final.safetensors as numpy arrays ({} when absent)."""
        a = self.analyses.get(analysis)
        return {} if a is None else {k: v.numpy() for k, v in a.tensors.items()}

    def tensor(self, analysis: str, name: str) -> np.ndarray:
        a = self._analysis(analysis)
        if name not in a.tensors:
            raise MissingData(a.missing.get("final") or f"analysis/{analysis}/final.safetensors has no tensor {name!r}")
        return a.tensors[name].numpy()

    @property
    def phases(self) -> dict:
        return dict((self.summary or {}).get("phases") or {})


def load_run_data(src: Any) -> RunData:
    """RunData from a run directory path, a `grokscope.run.Run`, or a RunData (returned as is).

    A path that is not a run directory raises RunDirError; absent analysis files do not.
    """
    if isinstance(src, RunData):
        return src
    from grokscope.analysis import choose_analyses, stale
    from grokscope.run import as_run

    run = as_run(src)
    if run.steps:  # a config.json that disagrees with its checkpoints is an error, not a report of the wrong model
        run.params(run.steps[-1])
    data = RunData(path=Path(run.path), name=str(run.name), config=run.config.to_dict(),
                   expected=[cls.name for cls in choose_analyses(run)])
    try:
        data.metrics = run.metrics
    except RunDirError as err:  # the page says so where the curves would be; the other sections still show
        log.warning("%s", err)
        data.missing["metrics"] = str(err)
    top = run.analysis(None)
    data.summary, data.progress = top.summary, top.tables.get("progress")
    for source in ("summary", "progress"):
        if source in top.missing:
            data.missing[source] = top.missing[source]
    for name in run.analyses:
        data.analyses[name] = run.analysis(name)
    data.stale = stale(run, data.summary)  # shown in the page; the CLI also prints it on stderr
    return data
