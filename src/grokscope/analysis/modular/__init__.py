"""The modular-arithmetic wing of the analysis: Fourier bases and groups (`fourier`), the grid
forward over all p^2 inputs (`grid`), per-checkpoint measures (`measures`) and the registered
`FourierAnalysis` (`analysis`)."""

from grokscope.analysis.modular.analysis import FourierAnalysis
from grokscope.analysis.modular.fourier import (
    Group,
    fourier_1d,
    fourier_2d,
    fourier_basis,
    gini,
    group_for,
    primitive_root,
    single_frequency_share,
)
from grokscope.analysis.modular.measures import CheckpointAnalyzer, KeyRule

__all__ = ["FourierAnalysis", "Group", "fourier_1d", "fourier_2d", "fourier_basis", "gini", "group_for",
           "primitive_root", "single_frequency_share", "CheckpointAnalyzer", "KeyRule"]
