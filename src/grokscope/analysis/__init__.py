"""Analyses of a run's checkpoints, written to RUN/analysis/ (docs/analysis.md).

    import grokscope
    result = grokscope.analyze("runs/add113")        # every registered analysis that applies
    result.summary["key_frequencies"], result.progress, result.outputs["fourier"].tables["circles"]

`analyze` is the driver (core.py); each analysis is a registered class (registry.py). The first
is the Fourier analysis of modular arithmetic (Nanda et al. 2023), in `analysis/modular/`; `heads`
scores attention heads as previous-token and induction heads (analysis/heads.py); `irreps` is the
group version of the Fourier analysis for S_n (analysis/groups/); `formation` follows each
chunk of a chunked MLP into a circle (analysis/chunks.py, analysis/formation.py); `numerics` counts
loss spikes and measures softmax collapse on every run (analysis/numerics.py).
"""

from grokscope.analysis.chunks import ChunkFormation
from grokscope.analysis.core import AnalysisResult, MemoryRun, analyze, choose_analyses, load_analysis, stale, subsample_steps
from grokscope.analysis.groups import IrrepAnalysis, IrrepRule
from grokscope.analysis.heads import HeadScores
from grokscope.analysis.modular import FourierAnalysis, KeyRule
from grokscope.analysis.numerics import Numerics, detect_spikes
from grokscope.analysis.phases import PhaseRule, Phases, detect_phases
from grokscope.analysis.registry import ANALYSES, AnalysisOutput, register_analysis, unregister_analysis

register_analysis(FourierAnalysis)
register_analysis(HeadScores)
register_analysis(IrrepAnalysis)
register_analysis(ChunkFormation)
register_analysis(Numerics)

__all__ = [
    "ANALYSES", "AnalysisOutput", "AnalysisResult", "ChunkFormation", "FourierAnalysis", "HeadScores", "IrrepAnalysis", "IrrepRule", "KeyRule", "MemoryRun", "Numerics", "PhaseRule",
    "Phases", "analyze", "choose_analyses", "detect_phases", "detect_spikes", "stale", "load_analysis", "register_analysis", "subsample_steps",
    "unregister_analysis",
]
