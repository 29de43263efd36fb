"""Loss-landscape geometry of a run: curvature (Hessian spectrum, trace, density) and the local
learning coefficient. See docs/landscape.md; the CLI verbs are `grokscope landscape` and `grokscope llc`."""

from grokscope.analysis.landscape.curvature import effective_dimension, hutchinson_trace, lanczos, spectral_density
from grokscope.analysis.landscape.hessian import Curvature, hessian, hessian_over_checkpoints
from grokscope.analysis.landscape.llc import LLCEstimate, calibrate, estimate_llc, llc_over_checkpoints, sgld_llc

__all__ = ["Curvature", "LLCEstimate", "calibrate", "effective_dimension", "hessian", "hessian_over_checkpoints",
           "hutchinson_trace", "lanczos", "estimate_llc", "llc_over_checkpoints", "sgld_llc", "spectral_density"]
