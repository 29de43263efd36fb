"""Which figures a report shows: sections registered per analysis, in page order.

`RUN_SECTIONS["run"]` and `COMPARE_SECTIONS["run"]` are shown for every run; the others for the runs
to which their analysis applies (a run not analysed yet gets each section's note instead). An
analysis added elsewhere registers its figures with `register_section(analysis, Section(...))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from grokscope.report import figures as G
from grokscope.report import formation_figures as M
from grokscope.report import fourier_figures as F
from grokscope.report import irrep_figures as I
from grokscope.report import landscape_figures as L
from grokscope.report import numerics_figures as N
from grokscope.report import saliency_figures as S


@dataclass(frozen=True)
class Section:
    id: str  # the page anchor and the PNG file name
    title: str
    figure: Callable[[Any], Any]  # RunData (or a list of them, for comparisons) -> plotly Figure
    intro: str = ""  # how to read it; shown under the title
    when: Callable[[Any], bool] | None = None  # RunData -> whether the section belongs in this run's page at all


CURVES_INTRO = ("Train and test loss (log scale) and accuracy over training steps; the buttons switch the step axis "
                "between linear (the late phases) and log (the first steps). Grokking is the late fall of the "
                "test loss long after the training set is memorised.")
PROGRESS_INTRO = ("Restricted loss keeps only the key frequencies' directions of the logits; excluded loss removes "
                  "them (train set). Circuit formation shows as excluded loss rising while train loss stays low; "
                  "clean-up as restricted test loss falling before the test loss does. Gini near 1 means the "
                  "weights use few frequencies.")

CHUNK_CIRCLES_INTRO = ("A chunked MLP embeds each token in several 2D chunks (seed 002). Each panel is one chunk's p "
                       "points over training (press Play or drag the slider); a chunk has formed a circuit when its "
                       "points lie on a circle in the order k x mod p (grey ring, for the chunk's final frequency k).")
TIMELINE_INTRO = ("One row per chunk: its circularity (the share of its points' variance on the best circle, 1 = a "
                  "perfect circle) at each checkpoint. A cross marks the chunk's formation step: the first "
                  "checkpoint from which the circularity stays >= the threshold at one frequency. Red crosses "
                  "formed within the window of another formation of the same run. Rules: "
                  "grokscope.analysis.formation.")
COINCIDENCE_INTRO = ("If circuits formed one at a time at a constant rate (a Poisson process), how many formations "
                     "would come in pairs or triples by chance? Grey: that number in simulations with each run's own "
                     "number of formations spread uniformly between its first and last; red: the number observed. "
                     "`grokscope formation RUN...` prints the same test and writes it as JSON.")

COLLAPSE_INTRO = ("Seed 004's loss spikes come from float32 cross-entropy; Prieto et al. (2025) name the cause softmax "
                  "collapse: once the correct logit leads by enough, its probability rounds to exactly 1, its loss to 0, "
                  "and the example stops pulling on it. Each line is the share of training targets collapsed at a "
                  "checkpoint in float32, in float64 and in the loss the run trained with (StableMax collapses far "
                  "later); crosses mark loss spikes (a rise above 10x the minimum of the 5 logged values before; "
                  "grokscope.analysis.numerics). The loss curves mark the spikes and the LR events too.")


def _has_components(data: Any) -> bool:
    from grokscope.analysis.phases import logged_components

    return bool(logged_components(getattr(data, "metrics", None)))


RUN_SECTIONS: dict[str, list[Section]] = {
    "run": [
        Section("curves", "Loss and accuracy", G.loss_curves,
                CURVES_INTRO + " Bands: memorisation, circuit formation, generalisation, clean-up (seed 004's phases, from the analysis); dashed "
                "line: first step with test accuracy >= 0.99."),
        Section("components", "Loss per component", G.component_curves,
                "The test loss and accuracy of each part of the answer (an output digit, a skip trigram, an op), against "
                "the overall test loss (grey). Seed 004 sees a separate phase change per component; x marks each "
                "component's detected phase change (the steepest point of its fall; rule in docs/analysis.md).",
                when=_has_components),
        Section("hessian_progress", "Curvature over training", L.hessian_progress,
                "The largest eigenvalues of the train loss's Hessian at each checkpoint measured by `grokscope landscape "
                "RUN --checkpoints N` (Lanczos on Hessian-vector products; docs/landscape.md): how sharp the "
                "bottom of the basin is along its steepest directions.", when=L.has_hessian_progress),
        Section("llc_progress", "Local learning coefficient over training", L.llc_progress,
                "The local learning coefficient (seed 001's effective dimension of the basin) at each checkpoint "
                "measured by `grokscope llc RUN --checkpoints N`: SGLD chains localised at the checkpoint; the band "
                "is the spread over chains. Compare it with settings from `grokscope llc RUN --calibrate`.",
                when=L.has_llc_progress),
        Section("hessian_spectrum", "The Hessian's spectrum", L.hessian_spectrum,
                "The spectral density of the loss's Hessian at each checkpoint measured by `grokscope landscape RUN "
                "--density N` (stochastic Lanczos quadrature over N probe vectors, smoothed; docs/landscape.md), "
                "with the top eigenvalues as ticks. A bulk near zero holds the flat directions; the outliers are "
                "the few stiff ones.", when=L.has_spectrum),
        Section("loss_surface", "The loss surface", L.loss_surface,
                "The train loss (log10, colour) on a plane through the final checkpoint: the plane of the training "
                "trajectory's first two principal components, with the trajectory drawn on it (`grokscope landscape "
                "RUN --slice pca`), or two random filter-normalised directions (`--slice 2d`).", when=L.has_surface),
        Section("loss_surface_3d", "The loss surface in 3D", L.loss_surface_3d,
                "The same train surface with log10 loss as height (drag to turn it), the trajectory drawn at the "
                "height of the nearest grid point.", when=L.has_surface_3d),
        Section("loss_surface_test", "The test loss surface", L.loss_surface_test,
                "The test loss on the same kind of plane (`grokscope landscape RUN --slice pca --split test`): where "
                "the train surface is flat, the test surface shows which of its points generalise.",
                when=L.has_test_surface),
        Section("connections", "Mode connectivity", L.connections,
                "The train loss along the straight line (dashed) and along a trained Bezier curve (solid) between "
                "two checkpoints (`grokscope landscape RUN --connect A B`). The barrier is the largest excess over "
                "the straight interpolation of the end losses.", when=L.has_connections),
        Section("circuit_walks", "Circuit directions", L.circuit_walks,
                "Seed 002's sloped canyons (`grokscope landscape RUN --circuits A B`): a walk from the checkpoint along "
                "B's stiffest Hessian direction with A's stiffest directions projected out, so B's loss rises while "
                "A's stays. Dashed: the straight walk; solid: each point relaxed in the directions orthogonal to the "
                "walk. A sloped canyon: the walk is a minimum across (no negative curvature orthogonal to it), the "
                "relaxed loss still rises, and "
                "B's loss rose more than A's (the rule is in docs/landscape.md).", when=L.has_circuit_walks),
        Section("saliency_histograms", "Neuron and head saliency over training", S.saliency_histograms,
                "Seed 003: as circuits form, a few units should carry the task, so the histogram of per-unit saliency "
                "(the median over training examples of |integrated gradient| of the correct answer's log-probability, "
                "`grokscope saliency RUN`) grows a long right tail: positive skew. Top: the histogram at each "
                "checkpoint (colour: the share of units); bottom: its skew.", when=S.has_saliency),
        Section("deletion", "Deleting the most salient units", S.deletion,
                "The test accuracy and loss with the top-k salient units of a layer deleted (solid) against k random "
                "units (dashed, the mean of a few draws) and none (grey). Seed 003 expects the gap to grow as the "
                "circuits generalise.", when=S.has_saliency),
    ],
    "numerics": [
        Section("softmax_collapse", "Softmax collapse and loss spikes", N.softmax_collapse, COLLAPSE_INTRO),
    ],
    "fourier": [
        Section("progress", "Progress measures", F.progress_measures,
                PROGRESS_INTRO + " Weight norms: click legend entries to show single parameters."),
        Section("embed_final", "Fourier norms of the embedding", F.embed_fourier_final,
                "How much of the embedding W_E lies in each Fourier frequency at the end of training. "
                "A generalising network is sparse: a few key frequencies (red) dominate."),
        Section("embed_anim", "Fourier norms of the embedding over training", F.embed_fourier_animation,
                "The same norms over training (press Play or drag the slider): sparsity appears during circuit "
                "formation."),
        Section("neurons", "Neuron clusters", F.neuron_clusters,
                "Each MLP neuron's activation over (x, y), split by frequency. Left: neurons whose variance lies "
                "mostly (>= threshold) in one frequency, per frequency. Right: every neuron's share per frequency."),
        Section("logits", "Fourier spectrum of the logits", F.logit_spectrum,
                "Norm of the logits' coefficients in the 2D Fourier basis of (x, y). The trained network "
                "computes cos(w(x+y-z)) terms, so the weight sits on matching (cos k, cos k) and (sin k, sin k) "
                "terms of the key frequencies."),
        Section("circles", "The embedding's circles", F.embedding_circles,
                "Each token's embedding projected on the cos and sin directions of a key frequency k. When the "
                "circuit forms the tokens lie on a circle in the order k*x mod p (grey line)."),
        Section("attention", "Attention patterns", F.attention_patterns,
                "How much the '=' position attends to x (rather than y or itself), per head, for every input."),
        Section("activations", "Neuron activations", F.neuron_activations,
                "Activations of a few MLP neurons (one per key frequency first) for every input (x, y)."),
    ],
    "irreps": [
        Section("irreps", "Irreducible representations", I.irrep_progress,
                "The S_n analogue of the Fourier progress measures. Each irreducible representation (irrep) of "
                "the group is a set of directions in the functions of one element; a network that composes "
                "elements through an irrep carries logits that are functions of the product x y in it. Top right: "
                "each irrep's share of those logits; key irreps (solid) pass the rule in analysis/irreps/summary.json. "
                "Restricted loss keeps only the key irreps' part of the logits, excluded loss removes it."),
    ],
    "heads": [
        Section("heads", "Attention heads", G.head_scores,
                "Induction score: attention from a token to the one after its previous copy, on random tokens repeated "
                "twice. Previous-token score: attention to the position before. An induction circuit is a "
                "previous-token head in one layer and an induction head in a later one; seed 004's repeated-"
                "subsequence task needs one, and its loss falls when they form. Dashed: the threshold that names a head."),
    ],
    "formation": [
        Section("chunk_circles", "Each chunk's circle over training", M.chunk_circles, CHUNK_CIRCLES_INTRO),
        Section("formation_timeline", "Formation timeline", M.formation_timeline, TIMELINE_INTRO),
    ],
}

COMPARE_SECTIONS: dict[str, list[Section]] = {
    "run": [Section("compare_curves", "Loss and accuracy", G.compare_curves, CURVES_INTRO)],
    "fourier": [Section("compare_progress", "Progress measures", F.compare_progress, PROGRESS_INTRO)],
    "numerics": [Section("compare_collapse", "Softmax collapse", N.compare_collapse, COLLAPSE_INTRO)],
    "formation": [
        Section("compare_formation_timeline", "Formation timeline", M.formation_timeline, TIMELINE_INTRO),
        Section("coincidence", "Do circuits form together? The coincidence test", M.coincidence, COINCIDENCE_INTRO),
    ],
}


def register_section(analysis: str, section: Section, compare: bool = False) -> None:
    """Show `section` in reports of runs that `analysis` applies to (comparison reports if `compare`)."""
    table = COMPARE_SECTIONS if compare else RUN_SECTIONS
    table.setdefault(analysis, []).append(section)


def sections_for(analyses: list[str], compare: bool = False, data: Any = None) -> list[Section]:
    """The generic sections, then those of each analysis in `analyses`, in registration order
    (with `data`, a run's RunData, leaving out the sections whose `when` says they do not belong)."""
    table = COMPARE_SECTIONS if compare else RUN_SECTIONS
    return [s for name, secs in table.items() if name == "run" or name in analyses for s in secs
            if data is None or s.when is None or s.when(data)]
