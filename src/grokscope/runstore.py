"""The run directory (docs/DESIGN.md): the only thing training writes and analysis reads.

    RUN/config.json   {"config": resolved RunConfig, "meta": versions, engine, device}
    RUN/split.json    train and test grid indices
    RUN/metrics.parquet
    RUN/checkpoints/step_000000100.safetensors   parameters; metadata: step, sha256
    RUN/state/step_000000100.safetensors         params + AdamW moments (+ callback state) for exact resume
    RUN/analysis/                                 what the analyses wrote (grokscope.analysis)

Every write is atomic (temp file + fsync + rename) and nothing is a pickle: tensors are
safetensors, whose header is JSON, so opening a run directory never executes code. Each
safetensors file carries the sha256 of its tensors, so truncation or bit rot is detected on load.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from grokscope.config import ConfigError, RunConfig
from grokscope.io import (RunDirError, WriteError, atomic_write_bytes, atomic_write_json, atomic_write_parquet, check_folder,
                          read_json)

log = logging.getLogger(__name__)

STEP_DIGITS = 9
STATES_KEPT = 2  # the newest state and one fallback in case the newest is damaged
METRIC_COLUMNS = ("step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


class CorruptFileError(RunDirError):
    """A file in a run directory fails its checks (not safetensors, truncated, wrong sha256)."""


class RunLockedError(RunDirError):
    """Another process is writing this run directory."""


def step_name(step: int) -> str:
    return f"step_{step:0{STEP_DIGITS}d}.safetensors"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def encode_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return st_save(tensors, metadata={**meta, "sha256": tensors_sha256(tensors)})


def _header(data: bytes, path: Path) -> dict:
    """Parse a safetensors header (8-byte little-endian length + JSON) without trusting the file."""
    if len(data) < 8:
        raise CorruptFileError(f"{path} is truncated or empty (not a safetensors file)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise CorruptFileError(f"{path} is not a valid safetensors file (bad header length; truncated?)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFileError(f"{path} is not a valid safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{path} is not a valid safetensors file")
    return header


def decode_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and verify a safetensors file; raises CorruptFileError naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except OSError as err:
        raise RunDirError(f"cannot read {path}: {err.strerror}") from None
    meta = _header(data, path).get("__metadata__") or {}
    try:
        tensors = st_load(data)
    except Exception:  # safetensors raises its own error types for malformed bodies
        raise CorruptFileError(f"{path} is corrupted (safetensors body does not match its header)") from None
    expected = meta.get("sha256")
    if expected is None:
        raise CorruptFileError(f"{path} has no sha256 in its metadata")
    if tensors_sha256(tensors) != expected:
        raise CorruptFileError(f"{path} is corrupted (sha256 mismatch)")
    return tensors, meta


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- layout ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def split_path(self) -> Path:
        return self.path / "split.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.parquet"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def analysis_dir(self) -> Path:
        return self.path / "analysis"

    def exists(self) -> bool:
        return self.config_path.is_file()

    # -- lock -----------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """An exclusive flock on RUN/.lock, released when this process ends (even by SIGKILL)."""
        import fcntl

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # unwritable, read-only, not a directory, disk full: one clear line
            raise WriteError(f"cannot write the run directory {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunLockedError(f"{self.path} is being written by another process (lock held on {self.path / '.lock'})") from None
            raise
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is informational; the flock is what counts (disk full must not stop a resume)
        # Temp files of the trainer's own writes, left by a killed writer (we hold the lock: nobody writes them now).
        for folder, pattern in ((self.path, ".config.json.*.tmp"), (self.path, ".split.json.*.tmp"),
                                (self.path, ".metrics.parquet.*.tmp"), (self.checkpoint_dir, ".*.tmp"), (self.state_dir, ".*.tmp")):
            for tmp in folder.glob(pattern) if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)

    def release_lock(self) -> None:
        """Release the lock; a directory that never got its config.json is removed again."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            try:  # clean up while still holding the lock, so no other process can lock the file being unlinked
                if not self.exists() and {p.name for p in self.path.iterdir()} <= {".lock", "split.json"}:
                    self.split_path.unlink(missing_ok=True)  # a start that failed before config.json: no run here
                    (self.path / ".lock").unlink(missing_ok=True)
                    self.path.rmdir()
            except OSError:
                pass
            finally:
                os.close(fd)

    # -- config and split -----------------------------------------------------------------------
    def write_config(self, config: dict, meta: dict) -> None:
        atomic_write_json(self.config_path, {"config": config, "meta": meta})

    def read_config(self) -> tuple[dict, dict]:
        data = read_json(self.config_path)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise RunDirError(f"{self.config_path} does not hold a grokscope run config")
        return data["config"], data.get("meta") or {}

    def write_split(self, split: dict) -> None:
        atomic_write_json(self.split_path, split)

    def read_split(self) -> dict:
        """split.json as a dict; the index lists it holds checked here, the rest by the task's from_split."""
        split = read_json(self.split_path)
        if not isinstance(split, dict):
            raise RunDirError(f"{self.split_path} must hold a JSON object")
        need = ("train", "test") if split.get("kind", "grid_index") == "grid_index" else ()  # a modular table's split
        ok = all(
            isinstance(split.get(k), list) and all(isinstance(i, int) and not isinstance(i, bool) for i in split[k])
            for k in {*need, *(k for k in ("train", "test") if k in split)}
        )
        if not ok:
            raise RunDirError(f"{self.split_path} must hold integer lists 'train' and 'test'")
        return split

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / step_name(step)

    def checkpoint_steps(self) -> list[int]:
        return _steps_in(self.checkpoint_dir)

    def save_checkpoint(self, step: int, params: dict[str, torch.Tensor]) -> None:
        atomic_write_bytes(self.checkpoint_path(step), encode_tensors(params, {"step": str(step), "format": "grokscope.params.v1"}))

    def load_checkpoint(self, step: int) -> dict[str, torch.Tensor]:
        tensors, meta = decode_tensors(self.checkpoint_path(step))
        if meta.get("step") != str(step):
            raise CorruptFileError(f"{self.checkpoint_path(step)} holds step {meta.get('step')}, not {step}")
        return tensors

    # -- resumable state ------------------------------------------------------------------------
    def save_state(self, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        atomic_write_bytes(self.state_dir / step_name(step), encode_tensors(tensors, {**meta, "step": str(step)}))
        for old in self.state_steps()[:-STATES_KEPT]:
            (self.state_dir / step_name(old)).unlink(missing_ok=True)

    def state_steps(self) -> list[int]:
        return _steps_in(self.state_dir)

    def load_state(self, step: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return decode_tensors(self.state_dir / step_name(step))

    def save_step(self, step: int, params: dict[str, torch.Tensor], state: dict[str, torch.Tensor], meta: dict[str, str],
                  rows: list[dict], checkpoint: bool = True) -> None:
        """Checkpoint, metrics, then resumable state: a kill between them loses nothing but time."""
        if checkpoint:
            self.save_checkpoint(step, params)
        self.save_metrics(rows)
        self.save_state(step, state, meta)

    def rows_before(self, step: int, expected: Sequence[int]) -> list[dict]:
        """The metrics rows before `step`, which must be exactly the `expected` steps (a resume's start)."""
        rows = [r for r in self.load_metrics().to_dict("records") if r["step"] < step]
        if [r["step"] for r in rows] != sorted(expected):
            raise CorruptFileError(f"{self.metrics_path} lacks rows before step {step}, the step of the newest usable state")
        return rows

    # -- metrics --------------------------------------------------------------------------------
    def save_metrics(self, rows: list[dict]) -> None:
        atomic_write_parquet(self.metrics_path, pd.DataFrame(rows, columns=list(rows[0]) if rows else METRIC_COLUMNS))

    def load_metrics(self) -> pd.DataFrame:
        if not self.metrics_path.is_file():
            return pd.DataFrame(columns=METRIC_COLUMNS)
        try:
            df = pd.read_parquet(self.metrics_path)
        except Exception:  # pyarrow raises several error types on damaged files
            raise CorruptFileError(f"{self.metrics_path} is not a readable parquet file") from None
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise CorruptFileError(f"{self.metrics_path} lacks columns {missing}")
        return df

    def last_logged_step(self) -> int | None:
        """The newest metrics row's step, or None when there is none (or the file is unreadable)."""
        try:
            m = self.load_metrics()
        except CorruptFileError:
            return None
        return int(m.step.iloc[-1]) if len(m) else None

    # -- analyses -------------------------------------------------------------------------------
    def analysis_names(self) -> list[str]:
        """The analyses written into this run: folders with a summary.json (a v1 layout reads as 'fourier')."""
        d = self.analysis_dir
        if not d.is_dir():
            return []
        names = sorted(p.name for p in d.iterdir() if p.is_dir() and (p / "summary.json").is_file())
        return names or (["fourier"] if _is_v1(d) else [])

    def read_analysis(self, name: str | None = None) -> "StoredAnalysis":
        return read_analysis_dir(self.analysis_dir, name, self.path)


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (a folder with config.json) at or below root, sorted."""
    root = Path(root)
    if (root / "config.json").is_file():
        return [root]
    return sorted((p.parent for p in root.rglob("config.json") if "analysis" not in p.parts), key=natural_key)


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """A folder that is not a run but holds runs (an ensemble's OUT, a sweep) stands for its runs;
    any other path (a run, a file, a missing path) stays as it is, for its reader to judge."""
    out: list[Path] = []
    for p in map(Path, paths):
        inner = [] if (p / "config.json").is_file() or not p.is_dir() else find_runs(p)
        out += inner or [p]
    return out


def natural_key(path: Path) -> list:
    """Sort key that puts seed2 before seed10 (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def write_analysis_dir(d: Path, summary: dict, tables: dict[str, pd.DataFrame],
                       tensors: dict[str, torch.Tensor] | None = None, meta: dict[str, str] | None = None) -> Path:
    """One analysis's files, atomically: a parquet per table, final.safetensors, then summary.json
    (last: its presence marks a complete analysis)."""
    for table, df in tables.items():
        atomic_write_parquet(d / f"{table}.parquet", df)
    if tensors:
        atomic_write_bytes(d / "final.safetensors", st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta or {}))
    atomic_write_json(d / "summary.json", summary)
    return d


def read_analysis_dir(root: Path, name: str | None = None, run: Path | None = None) -> "StoredAnalysis":
    """The files of analysis `name` under the analysis root (name None: the run-level ones). A file
    that is absent or unreadable is left out, with the reason in `missing`, so a reader can still
    use the rest. A v1 layout (grokscope 0.1.0: the Fourier analysis's files directly in
    analysis/) reads as analysis 'fourier'."""
    run = run if run is not None else root.parent
    d = root if name is None else root / name
    if name == "fourier" and not d.is_dir() and _is_v1(root):
        d = root
    if name is not None and not d.is_dir():
        written = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise RunDirError(f"no analysis {name!r} in {root} (written: {', '.join(written) or 'none'}); "
                          "`grokscope analyze RUN` writes every analysis that applies")
    out = StoredAnalysis(name, d)
    summary, why = _read_file(d / "summary.json", read_json, run)
    if why:
        out.missing["summary"] = why
    elif not isinstance(summary, dict):
        out.missing["summary"] = "summary.json is not a JSON object"
    else:
        out.summary = summary
    for f in sorted(d.glob("*.parquet")) if d.is_dir() else ():
        df, why = _read_file(f, pd.read_parquet, run)
        if why:
            out.missing[f.stem] = why
        else:
            out.tables[f.stem] = df
    if "progress" not in out.tables and "progress" not in out.missing:
        out.missing["progress"] = _read_file(d / "progress.parquet", pd.read_parquet, run)[1]
    if (d / "final.safetensors").exists():
        tensors, why = _read_file(d / "final.safetensors", _load_safetensors, run)
        if why:
            out.missing["final"] = why
        else:
            out.tensors = tensors
    return out


@dataclass
class StoredAnalysis:
    """What one analysis wrote: its summary, tables (progress, ...) and final-checkpoint tensors."""

    name: str | None
    path: Path
    summary: dict | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # file -> why it is absent


def _is_v1(analysis_dir: Path) -> bool:
    try:
        return read_json(analysis_dir / "summary.json").get("format") == "grokscope.analysis.v1"
    except (RunDirError, AttributeError):
        return False


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _read_file(path: Path, reader: Callable, run: Path) -> tuple[object, str | None]:
    """(value, None), or (None, a reason fit for a reader) for a missing or unreadable file."""
    if not path.is_file():
        return None, f"{path.name} not found: run `grokscope analyze {run}` first"
    try:
        return reader(path), None
    except Exception as err:  # a half-written or foreign file must not stop the readers of the rest
        log.warning("cannot read %s: %s", path, err)
        return None, f"{path.name} could not be read ({err.__class__.__name__})"


def _steps_in(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    steps = []
    for f in folder.iterdir():
        name = f.name
        if name.startswith("step_") and name.endswith(".safetensors") and name[5:-12].isdigit():
            steps.append(int(name[5:-12]))
    return sorted(steps)


# --- a training run's lifecycle on disk ----------------------------------------------------------

def _start_leftover(name: str) -> bool:
    """What a start killed before config.json leaves (no run yet): a fresh train may take the directory over."""
    return name in (".lock", "split.json") or (name.endswith(".tmp") and name.startswith((".split.json.", ".config.json.")))


# Everything a run directory can hold; --overwrite removes these and refuses a folder holding anything else
RUN_ENTRIES = frozenset({"config.json", "split.json", "metrics.parquet", "checkpoints", "state", "analysis",
                         "landscape", "report.html", ".lock", "tensorboard", "wandb", "wandb_id.txt"})  # the last three: grokscope.loggers


def _run_entry(name: str) -> bool:
    return name in RUN_ENTRIES or (name.startswith(".") and name.endswith(".tmp"))  # an atomic write's temp file


def _refuse_existing(store: "RunStore") -> None:
    """A fresh start into a folder that holds a run: say what the run is and the three ways on."""
    what = "files"
    if store.exists():
        last = store.last_logged_step()
        try:
            total = RunConfig.from_dict(store.read_config()[0]).total_steps()
        except (ConfigError, RunDirError):
            total = None
        if last is not None and last == total:
            raise RunDirError(f"{store.path} already holds a finished run (step {total}); choose another --out, "
                              "or replace it with --overwrite (overwrite=True)")
        what = "a run" + (f" (stopped at step {last} of {total})" if last is not None and total else "")
    raise RunDirError(f"{store.path} already holds {what}; continue it with --resume {store.path} (resume=True), "
                      "choose another --out, or replace it with --overwrite (overwrite=True)")


def _check_overwritable(store: "RunStore") -> None:
    foreign = sorted(p.name for p in store.path.iterdir() if not _run_entry(p.name))
    if foreign:
        raise RunDirError(f"--overwrite: {store.path} holds {foreign[0]!r}, which is not part of a run directory; "
                          "move it away or choose another --out")


def _clear(store: "RunStore") -> None:
    """Remove a locked run directory's contents. config.json goes first: a kill part-way leaves a
    folder that is no longer a run, which --overwrite accepts again."""
    store.config_path.unlink(missing_ok=True)
    for p in sorted(store.path.iterdir()):
        if p.name == ".lock":
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def release_all(stores: Sequence[RunStore]) -> None:
    for store in stores:
        store.release_lock()


def check_outs(stores: Sequence[RunStore], resume: bool, overwrite: bool) -> None:
    """Whether each folder can take what was asked: a resume needs a run, a fresh start an empty
    folder (or, with `overwrite`, one holding only a run's files). Reads only; nothing is locked."""
    if resume and overwrite:
        raise ConfigError("--overwrite", "cannot be combined with --resume (resume continues a run, overwrite replaces it)")
    for store in stores:
        if resume:
            if not store.exists():
                raise RunDirError(f"cannot resume {store.path}: it holds no run (no config.json)")
        elif store.path.exists() and not store.path.is_dir():
            raise RunDirError(f"{store.path} is a file, not a run directory; choose another --out")
        elif not store.path.exists():
            check_folder(store.path)
        elif any(not _start_leftover(p.name) for p in store.path.iterdir()):  # an existing folder
            if not overwrite:
                _refuse_existing(store)
            _check_overwritable(store)


def open_for_training(stores: Sequence[RunStore], configs: Sequence[dict], splits: Sequence[dict], resume: bool,
                      overwrite: bool = False) -> None:
    """Check and lock every member's directory: all stay locked, or none (and an error says why).

    A fresh start needs empty (or leftover-only) directories; `overwrite` first empties each one that
    holds a run (only run files: anything else is refused), once it is locked; a resume needs each
    directory's stored config and split to equal the ones given.
    """
    check_outs(stores, resume, overwrite)
    locked: list[RunStore] = []
    try:
        for store in stores:
            store.acquire_lock()
            locked.append(store)
        if overwrite:
            for store in stores:
                _clear(store)
        if resume:
            for store, config, split in zip(stores, configs, splits):
                stored, _ = store.read_config()
                try:  # compare resolved configs: a run written before a key existed stores no value for it
                    stored = RunConfig.from_dict(stored).to_dict()
                except ConfigError as err:
                    raise RunDirError(f"{store.config_path}: {err}") from None
                if stored != config:
                    raise ConfigError("--resume", f"the config differs from the one stored in {store.config_path}")
                on_disk = store.read_split()
                if any(on_disk.get(k) != split[k] for k in ("train", "test", "n_train", "n_test", "sha256") if k in split):
                    raise RunDirError(f"{store.split_path} does not match the split its config produces")
    except BaseException:
        release_all(locked)
        raise


def write_headers(stores: Sequence[RunStore], configs: Sequence[dict], splits: Sequence[dict], meta: dict) -> None:
    for store, config, split in zip(stores, configs, splits):
        store.write_split(split)
        store.write_config(config, meta)  # written last: its presence marks a run


StateCheck = Callable[[Path, dict, dict], None]


def latest_state(stores: Sequence[RunStore], check: StateCheck) -> tuple[int, list[tuple[dict, dict]]] | None:
    """The newest step at which every member has a state that loads and passes `check`
    (path, tensors, meta -> raises CorruptFileError), with the loaded (tensors, meta) per member.
    Damaged files are skipped with a warning, falling back to the older state kept beside them."""
    candidates = sorted(set.intersection(*(set(s.state_steps()) for s in stores)), reverse=True)
    for step in candidates:
        try:
            loaded = [s.load_state(step) for s in stores]
            for s, (tensors, meta) in zip(stores, loaded):
                check(s.state_dir / step_name(step), tensors, meta)
        except CorruptFileError as err:
            log.warning("skipping damaged state: %s", err)
            continue
        return step, loaded
    return None
