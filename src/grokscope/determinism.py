"""`train.deterministic`: the process settings under which one config and seed give bit-identical
numbers in every process on one machine.

Without them a run is already repeatable in practice on one CPU (benchmarks/reproducibility.py
counts trajectories), but three choices are left to the libraries at run time, and each can
change float rounding from one process to the next:

- MKL picks its code path per call from the data's memory alignment and may use fewer threads
  than asked (MKL_DYNAMIC). Its conditional numerical reproducibility mode AUTO fixes both for the
  CPU it runs on. MKL reads the mode once, at its first call in a process, so it is set before
  any matrix product, or taken from the environment (MKL_CBWR=AUTO or COMPATIBLE).
- The fast engine times equivalent formulations of one product and keeps the fastest
  (engine/kernels.py). They agree bit for bit on the shapes timed; deterministic mode takes the
  first one without timing, so no choice depends on the machine's load.
- torch and cuDNN may pick nondeterministic CUDA kernels (atomics in scatter-add and index
  backward, cuBLAS workspaces). `torch.use_deterministic_algorithms(True)` forbids them.

The one cause of cross-process differences found on CPU (a race in MKL's vector math at a
function's first call) is settled in every mode by `grokscope.cpu.settle_vector_math`; these
settings close the rest.

All three are process-wide: once on, they stay on for the rest of the process.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.utils.deterministic

from grokscope.config import ConfigError
from grokscope.cpu import CBWR_AUTO, CBWR_BRANCH, CBWR_BRANCH_OFF, CBWR_MODE_CHANGE_FAILURE, mkl_library, mkl_mode
from grokscope.engine import kernels

log = logging.getLogger(__name__)


def _reproducible_mkl() -> str | None:
    """Turn MKL's AUTO mode on if no mode is set; the mode in force, or None without MKL."""
    lib = mkl_library()
    if lib is None:
        return None
    if lib.mkl_serv_cbwr_get(CBWR_BRANCH) == CBWR_BRANCH_OFF:
        rc = lib.mkl_serv_cbwr_set(CBWR_AUTO)
        if rc == CBWR_MODE_CHANGE_FAILURE:
            raise ConfigError("train.deterministic", "needs MKL's reproducible mode, which can only be set before the "
                              "process's first matrix product; train in a fresh process (the CLI does), call "
                              "grokscope.determinism.enable() first, or start Python with MKL_CBWR=AUTO")
        if rc != 0:
            raise RuntimeError(f"mkl_cbwr_set(AUTO) failed with code {rc}")
    lib.MKL_Set_Dynamic(0)  # exactly the threads asked for, however loaded the machine is
    return mkl_mode()


def enable(device: torch.device | str = "cpu") -> None:
    """Switch this process to deterministic numerics for training on `device` (config.json's
    meta.numerics then records mkl_cbwr AUTO and deterministic_algorithms true).

    Call it first thing in a notebook that will train with `train.deterministic=true` (the trainer
    calls it too, but MKL's mode can only be set before the first matrix product).
    """
    device = torch.device(device)
    # First, the one step that can refuse, so that a refusal changes nothing; a CUDA run needs no MKL.
    mode = _reproducible_mkl() if device.type == "cpu" else None
    if device.type == "cuda":
        # cuBLAS reads its workspace config when its handle is made: set before the first CUDA product.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    # ...which by default also fills every new tensor with NaN, a debugging aid that took 19% of a
    # canonical training step (measured); the trainer reads no uninitialised memory.
    torch.utils.deterministic.fill_uninitialized_memory = False
    kernels.pin_first(True)
    log.info("deterministic numerics on %s: MKL mode %s, deterministic algorithms, untimed kernels", device, mode)
