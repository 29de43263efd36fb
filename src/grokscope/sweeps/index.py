"""The run index: one table over many run directories (a sweep, an ensemble, a folder of runs).

One row per run: its path, every config key (dotted, e.g. `optim.weight_decay`), status, the final
metrics, the grokking step (first logged step with test_acc >= 0.99), the memorisation step (the
same on train_acc) and, where the run was analysed, the headline numbers of its analysis summary.
`index_runs(root)` returns it as a DataFrame; `write_index(root)` also stores it as SQLite
(`root/index.sqlite`, table `runs`), which any SQL client can query:

    grokscope runs runs/sweep --where '"optim.weight_decay" >= 1 AND grokking_step IS NOT NULL'
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from grokscope.analysis.phases import first_step_at_least, grokking_step
from grokscope.config import ConfigError, flatten_dict
from grokscope.io import RunDirError, WriteError
from grokscope.run import load_run
from grokscope.runstore import find_runs

log = logging.getLogger(__name__)

HEADLINE = ("key_frequencies", "frac_neurons_single_frequency", "logit_fit_variance_explained")
AT_ONCE = 2.0  # generalising by AT_ONCE x the memorisation step is "at once", later is grokking
OUTCOMES = ("never groks", "groks", "generalises at once")


def outcome(grok: float | None, mem: float | None) -> str:
    """One of OUTCOMES from the grokking (test_acc >= 0.99) and memorisation (train_acc >= 0.99)
    steps. Generalising without having memorised first is "at once" too."""
    if grok is None or pd.isna(grok):
        return "never groks"
    if mem is None or pd.isna(mem) or grok <= AT_ONCE * max(mem, 1):
        return "generalises at once"
    return "groks"


def _row(path: Path, root: Path) -> dict[str, Any]:
    run = load_run(path)
    row: dict[str, Any] = {"path": str(path.relative_to(root)) if path != root else ".", "name": run.name}
    row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flatten_dict(run.config.to_dict()).items()})
    m = run.metrics
    last = m.iloc[-1] if len(m) else None
    row["last_step"] = None if last is None else int(last["step"])
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        row[f"final_{col}"] = None if last is None else float(last[col])
    row["grokking_step"] = grokking_step(m)
    row["memorization_step"] = (first_step_at_least(m["step"].to_numpy(), m["train_acc"].to_numpy(), 0.99)
                                if len(m) else None)
    summary = run.analysis().summary or {}
    for key in HEADLINE:
        v = summary.get(key)
        row[key] = json.dumps(v) if isinstance(v, list) else v
    return row


def index_runs(root: str | Path) -> pd.DataFrame:
    """The index of every run below root; a run that cannot be read is left out with a warning."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a directory")
    rows = []
    for path in find_runs(root):
        try:
            rows.append(_row(path, root))
        except RunDirError as err:
            log.warning("not indexed: %s", err)
    return pd.DataFrame(rows)


def _to_sqlite(df: pd.DataFrame, con: sqlite3.Connection) -> None:
    df.to_sql("runs", con, index=False, if_exists="replace")


def write_index(root: str | Path, df: pd.DataFrame | None = None) -> Path:
    """Write root/index.sqlite (table `runs`: `df`, default the index of root) atomically; returns its path."""
    root = Path(root)
    df = index_runs(root) if df is None else df
    path = root / "index.sqlite"
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".index.sqlite.", suffix=".tmp")
    os.close(fd)
    try:
        with sqlite3.connect(tmp) as con:
            _to_sqlite(df, con)
        os.replace(tmp, path)
    except (OSError, sqlite3.Error) as err:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {err}") from None
    return path


def query_runs(root: str | Path, where: str | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The index of root filtered by an SQL `where` clause over its columns, `columns` picked.
    root/index.sqlite is rewritten only once the query is known to be good."""
    index = index_runs(root)
    with sqlite3.connect(":memory:") as con:
        _to_sqlite(index, con)
        try:
            df = pd.read_sql_query("SELECT * FROM runs" + (f" WHERE {where}" if where else ""), con)
        except (sqlite3.Error, pd.errors.DatabaseError) as err:
            raise ConfigError("--where", f"not a valid SQL condition over the index's columns ({err})") from None
    if columns:
        unknown = [c for c in columns if c not in df.columns]
        if unknown:
            raise ConfigError("--columns", f"unknown column {unknown[0]!r} (e.g. path, name, optim.lr, grokking_step)")
        df = df[list(columns)]
    write_index(root, index)
    return df
