"""Evaluation figures: the ROC curve and the genuine/impostor distance histograms, as PNG files.

Both are drawn from the sorted distances of :class:`~service.evaluation.metrics.PairDistances`
by counting below cuts, never from one array of every pair: LFW has 88M pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.errors import EvaluationInputError
from service.evaluation.metrics import PairDistances, count_below, rates, roc_at

ROC_POINTS = 1000  # per class: far more than a 640-pixel-wide figure can show


def figure_names(threshold: float) -> tuple[str, str]:
    """File names carry the threshold, so runs at different thresholds can sit side by side."""
    return f"roc-threshold-{threshold:g}.png", f"distances-threshold-{threshold:g}.png"


def write_figures(pairs: PairDistances, threshold: float, folder: Path) -> list[Path]:
    """Draw both figures into ``folder`` and return their paths."""
    return write_side_by_side([(None, pairs)], threshold, folder)


def roc_cuts(pairs: PairDistances, points: int = ROC_POINTS) -> np.ndarray:
    """Thresholds at which to draw the ROC: impostor distances at ranks spaced evenly on a log scale
    (the FAR axis is logarithmic), genuine ones at evenly spaced ranks, and 0 and +inf (its ends)."""
    imp, gen = pairs.impostor, pairs.genuine
    imp_ranks = np.unique(np.geomspace(1, len(imp), points).astype(np.int64)) - 1
    gen_ranks = np.unique(np.linspace(0, len(gen) - 1, points).astype(np.int64))
    return np.unique(np.concatenate([[0.0, np.inf], imp[imp_ranks], gen[gen_ranks]]).astype(np.float64))


def _roc(ax, pairs: PairDistances, threshold: float) -> None:
    """TAR against FAR on a log FAR axis: the low-FAR end is where thresholds are chosen."""
    far, tar = roc_at(pairs, roc_cuts(pairs))
    n_imp = len(pairs.impostor)
    floor = 0.5 / n_imp  # FAR 0 cannot sit on a log axis: drawn half a false accept below the first one
    ax.step(np.maximum(far, floor), tar, where="post", color="tab:blue", label="ROC")
    at = rates(pairs, threshold)
    ax.plot([max(at["far"], floor)], [at["tar"]], "o", color="tab:red", markersize=8,
            label=f"threshold {threshold:g}: TAR {at['tar']:.3f}, FAR {at['far']:.4f}")
    ax.axvline(floor, color="grey", linestyle=":", linewidth=1)
    ax.annotate("FAR 0", (floor, 0.02), xytext=(4, 0), textcoords="offset points", color="grey", fontsize="small")
    ax.set_xscale("log")
    ax.set_xlim(floor * 0.4, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"false-accept rate (log; {n_imp} impostor pairs, FAR 0 drawn at {floor:.1g})")
    ax.set_ylabel(f"true-accept rate ({len(pairs.genuine)} genuine pairs)")
    ax.set_title("ROC: accept when distance < threshold")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")


def histogram_counts(ascending: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram's counts (the last bin closed on the right) from sorted values, without a pass over them."""
    below = count_below(ascending, edges)
    below[-1] = count_below(ascending, edges[-1], inclusive=True)
    return np.diff(below)


def _histograms(ax, pairs: PairDistances, threshold: float) -> None:
    """Both distance distributions as densities (impostor pairs far outnumber genuine ones)."""
    largest = max(float(pairs.genuine[-1]), float(pairs.impostor[-1]))
    bins = np.linspace(0, max(2.0, largest), 81)
    for values, colour, label in ((pairs.genuine, "tab:green", "genuine"), (pairs.impostor, "tab:orange", "impostor")):
        ax.hist(bins[:-1], bins=bins, weights=histogram_counts(values, bins), density=True, alpha=0.6,
                color=colour, label=f"{label} ({len(values)} pairs)")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("L2 distance between encodings")
    ax.set_ylabel("density")
    ax.set_title("Pair distances")
    ax.legend(loc="upper left", fontsize="small")


def write_side_by_side(panels: list[tuple[str | None, PairDistances]], threshold: float, folder: Path) -> list[Path]:
    """The ROC and the histograms of one or several sets of pairs (e.g. before and after a trained
    head), each figure with one panel per set (titled by its name), histograms on one density scale."""
    import matplotlib

    matplotlib.use("Agg")  # selected here, not at import: no display needed, and nobody else's backend changed
    import matplotlib.pyplot as plt

    folder = Path(folder)
    paths = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, draw in zip(figure_names(threshold), (_roc, _histograms)):
            fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=100, squeeze=False)
            try:
                for ax, (title, pairs) in zip(axes[0], panels):
                    draw(ax, pairs, threshold)
                    if title:
                        ax.set_title(f"{title}: {ax.get_title()}")
                if draw is _histograms:
                    top = max(ax.get_ylim()[1] for ax in axes[0])
                    for ax in axes[0]:
                        ax.set_ylim(0, top)
                fig.tight_layout()
                fig.savefig(folder / name)
            finally:
                plt.close(fig)
            paths.append(folder / name)
    except OSError as exc:
        raise EvaluationInputError(f"cannot write the figures to {folder}: {exc.strerror or exc}") from None
    return paths
