"""Atomic file writes (a crash or a kill leaves either the old file or the new one, never half of
one), and the progress bar that long work shows on a terminal."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


class RunDirError(OSError):
    """A run directory cannot be read or used as asked; the message names the file and what to do."""


class WriteError(RunDirError):
    """Writing failed (disk full, permissions); the file keeps its previous content."""


def check_folder(path: str | Path) -> Path:
    """Refuse, before anything is written, a folder to be (or to hold a file) that cannot be one:
    it or a folder above it is an existing file (mkdir would fail half-way, with an OS message)."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise RunDirError(f"cannot write into {p}: {q} is a file, not a folder")
            break
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would have
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, default=_json_default) + "\n")


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or malformed file into one clear RunDirError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON ({err.__class__.__name__})") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def in_jupyter() -> bool:
    """Inside a Jupyter kernel: its stderr is no terminal, yet it shows tqdm.auto's bar."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def progress_bar(total: int | None, initial: int = 0, unit: str = "step", enabled: bool = True, desc: str | None = None):
    """A tqdm bar (a widget in Jupyter), silent unless `enabled` and stderr is a terminal or this is a
    Jupyter kernel: logs, pipes and CI stay clean."""
    from tqdm.auto import tqdm

    shown = enabled and (sys.stderr.isatty() or in_jupyter())
    return tqdm(total=total, initial=initial, disable=not shown, unit=unit, desc=desc, dynamic_ncols=True, mininterval=0.5)
