"""Finite groups and their real irreducible representations, from characters computed in code:
the S_n analogue of the Fourier analysis (`irreps.IrrepAnalysis`), with Z_n as the cyclic check."""

from grokscope.analysis.groups.finite import FiniteGroup, Irrep, cyclic_group, symmetric_group
from grokscope.analysis.groups.irreps import IrrepAnalysis, IrrepRule

__all__ = ["FiniteGroup", "Irrep", "IrrepAnalysis", "IrrepRule", "cyclic_group", "symmetric_group"]
