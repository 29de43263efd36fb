"""Process settings that make CPU training fast: flush denormals, keep freed memory.

Both are process-wide and change no result that matters here; the trainer applies them on CPU
and records them in config.json's meta.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
from typing import Iterator

import torch

log = logging.getLogger(__name__)


def _torch_libgomp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime that torch's intra-op threads run on, if torch loaded one (Linux wheels)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)  # already loaded: the same library instance, the same thread pool
        except OSError:
            continue
    return None


def _set_on_every_thread(on: bool) -> bool:
    """torch.set_flush_denormal(on) on the calling thread and on each of torch's OpenMP workers.

    The FTZ/DAZ bits live in each thread's MXCSR register. Threads created later copy their
    creator's, but torch's OpenMP pool may already exist, so one parallel region of
    torch.get_num_threads() threads runs the call on every pool thread (GOMP_parallel with a
    ctypes callback; each call takes the GIL in turn).
    """
    if not torch.set_flush_denormal(on):
        return False  # the CPU has no such mode (not x86 with SSE3)
    lib = _torch_libgomp()
    if lib is None or not hasattr(lib, "GOMP_parallel"):
        log.debug("no GNU OpenMP runtime found: denormal mode set on the calling thread only")
        return True
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: torch.set_flush_denormal(on))
    lib.GOMP_parallel.argtypes = [type(callback), ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    lib.GOMP_parallel.restype = None
    lib.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return True


@contextlib.contextmanager
def flush_denormals() -> Iterator[bool]:
    """Treat float denormals (|x| < 1.2e-38 in float32) as zero inside the block, on every torch CPU thread.

    Why: once a grokking run has memorised, softmax probabilities of 1e-30 and below enter the
    gradient; products of such values are denormal, and on Intel CPUs every arithmetic operation on
    a denormal takes a microcode assist ~100x slower than a normal one. Measured on the canonical
    run at epoch 4000 (2 threads, Xeon): 55 ms per training step without, 27 ms with. The values
    flushed are below 1e-38, against gradients of order 1e-4 and up. Yields whether the mode took;
    the default (off) is restored on exit.
    """
    ok = _set_on_every_thread(True)
    try:
        yield ok
    finally:
        if ok:
            _set_on_every_thread(False)


def keep_freed_memory(trim_bytes: int = 1 << 29) -> bool:
    """Ask glibc to keep freed large blocks for reuse; True if it took. Process-wide; call once.

    Why: a CPU training step allocates and frees the same ~10 MB activations every step. glibc
    serves blocks above its mmap threshold with fresh mmap()s and unmaps them on free, so every step
    page-faults ~2500 zeroed pages (~5 ms of system time here, a third of a fast-engine epoch).
    M_MMAP_THRESHOLD = 32 MiB (glibc's maximum) keeps such blocks on the heap, and M_TRIM_THRESHOLD
    = `trim_bytes` stops the heap from being handed back after each step. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 1 << 25) == 1 and mallopt(m_trim_threshold, int(trim_bytes)) == 1
    log.info("glibc mallopt: mmap threshold 32 MiB, trim threshold %d bytes: %s", trim_bytes, "ok" if ok else "refused")
    return ok


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's marketing name (/proc/cpuinfo's "model name"; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def blas_version() -> str:
    """The BLAS torch was built with, as its build info names it (e.g. "MKL 2024.2")."""
    import re

    info = torch.__config__.show()
    m = re.search(r"Math Kernel Library Version ([\d.]+)", info)
    if m:
        return f"MKL {m.group(1)}"
    m = re.search(r"BLAS_INFO=(\w+)", info)
    return m.group(1) if m else "unknown BLAS"


def describe_machine() -> str:
    """One line of what decides CPU speed here: model, vector capability, threads, torch, BLAS.

    Benchmarks print it beside every figure: the same code runs ~2x apart on two x86 CPUs of one
    class (docs/engine.md), so a number without its CPU means little."""
    cap = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu_model()} | capability {cap} | {torch.get_num_threads()} threads | torch {torch.__version__} | "
            f"{blas_version()}")


def numerics(device: torch.device) -> dict:
    """What decides a run's float rounding, for config.json's meta: the same config and seed give the
    same numbers only where these agree (docs/training.md, "What is reproducible")."""
    out = {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "blas": blas_version(), "torch": torch.__version__, "MKL_CBWR": os.environ.get("MKL_CBWR")}
    if device.type == "cuda":
        out["cuda_device"] = torch.cuda.get_device_name(device)
        out["cuda"] = torch.version.cuda
    return out
