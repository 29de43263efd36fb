"""Mechanistic analysis of modular-arithmetic runs (Nanda et al. 2023): Fourier structure, key
frequencies, progress measures (restricted / excluded loss, Gini, weight norms), phases.

    from grokscope.analysis import analyze_run, progress_measures
    summary = analyze_run("runs/nanda2023")          # writes runs/nanda2023/analysis/
    df = progress_measures("runs/nanda2023")         # the same measures as a DataFrame

Formats and rules: docs/analysis.md.
"""

from grokscope.analysis.core import (
    Analysis,
    MemoryRun,
    analyze,
    analyze_run,
    load_analysis,
    open_run,
    progress_measures,
    write_analysis,
)
from grokscope.analysis.fourier import (
    Group,
    fourier_1d,
    fourier_2d,
    fourier_basis,
    gini,
    group_for,
    primitive_root,
    single_frequency_share,
)
from grokscope.analysis.measures import CheckpointAnalyzer, KeyRule
from grokscope.analysis.phases import PhaseRule, Phases, detect_phases

__all__ = [
    "Analysis", "MemoryRun", "analyze", "analyze_run", "load_analysis", "open_run", "progress_measures",
    "write_analysis", "Group", "fourier_1d", "fourier_2d", "fourier_basis", "gini", "group_for",
    "primitive_root", "single_frequency_share", "CheckpointAnalyzer", "KeyRule", "PhaseRule", "Phases",
    "detect_phases",
]
