"""Process settings that make CPU training fast: flush denormals, keep freed memory.

Both are process-wide and change no result that matters here; the trainer applies them on CPU
and records them in config.json's meta.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
from pathlib import Path
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


# torch's CPU ops that go through MKL's vector math library (VML) where torch is built with MKL.
VML_OPS = ("exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf")


@functools.lru_cache(maxsize=1)
def settle_vector_math() -> None:
    """Call each VML op once on one thread, so that no training step is a VML function's first call.

    Why: torch computes exp, log, tanh... on CPU through MKL's VML (MKL_CBWR changes their results,
    so it is MKL's code), and VML picks its code path at a function's first call in the process.
    When two threads make that first call at once, one thread's share sometimes runs on another
    path. Measured on the canonical config (2 threads, Xeon, 2026-12-02): the first training step's
    float64 exp in the loss differed in ~half of its 432,903 values in 6 of 100 processes (one
    thread's half), so the step-0 loss differed at ~1e-12 and the trajectory split from step 2 on;
    later calls agreed in every process. An 8-element call (below torch's parallel grain: one thread)
    settles the choice first: with it, 110 of 110 processes gave one trajectory (benchmarks/
    reproducibility.py; docs/training.md, "Reproducibility").
    """
    for dtype in (torch.float32, torch.float64):
        x = torch.full((8,), 0.5, dtype=dtype)
        for op in VML_OPS:
            getattr(x, op)()


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


# mkl_cbwr.h: the branch ids and the "MKL already ran" error of mkl_cbwr_set.
CBWR_BRANCH, CBWR_BRANCH_OFF, CBWR_AUTO = 1, 1, 2  # component selector; mode ids
CBWR_NAMES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
               10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}
CBWR_MODE_CHANGE_FAILURE = -8


@functools.lru_cache(maxsize=1)
def mkl_library() -> ctypes.CDLL | None:
    """torch's MKL service layer (statically linked into libtorch_cpu), or None in a build without MKL."""
    if not torch.backends.mkl.is_available():
        return None
    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        lib = ctypes.CDLL(str(path))
        lib.mkl_serv_cbwr_get.argtypes = lib.mkl_serv_cbwr_set.argtypes = [ctypes.c_int]
        lib.MKL_Set_Dynamic.argtypes = [ctypes.c_int]
        return lib
    except (OSError, AttributeError):
        log.warning("MKL's reproducibility mode is out of reach in this torch build; set MKL_CBWR=AUTO yourself")
        return None


def mkl_mode() -> str | None:
    """MKL's conditional numerical reproducibility branch in this process (OFF, AUTO, COMPATIBLE, AVX2...), or None without MKL."""
    lib = mkl_library()
    if lib is None:
        return None
    branch = lib.mkl_serv_cbwr_get(CBWR_BRANCH)
    return CBWR_NAMES.get(branch, str(branch))


def numerics(device: torch.device) -> dict:
    """What decides a run's float rounding, for config.json's meta: the same config and seed give the
    same numbers only where these agree (docs/training.md, "What is reproducible")."""
    out = {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "blas": blas_version(), "torch": torch.__version__, "mkl_cbwr": mkl_mode(),
           "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        out["cuda_device"] = torch.cuda.get_device_name(device)
        out["cuda"] = torch.version.cuda
    return out
