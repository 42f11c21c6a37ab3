"""Evaluation figures: the ROC curve and the genuine/impostor distance histograms, as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def figure_names(threshold: float) -> tuple[str, str]:
    """File names carry the threshold, so runs at different thresholds can sit side by side."""
    return f"roc-threshold-{threshold:g}.png", f"distances-threshold-{threshold:g}.png"


def write_figures(distances: np.ndarray, same: np.ndarray, threshold: float, folder: Path) -> list[Path]:
    """Draw both figures into ``folder`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # selected here, not at import: no display needed, and nobody else's backend changed
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roc_name, hist_name = figure_names(threshold)
    same = np.asarray(same, bool)
    paths = []
    for name, draw in ((roc_name, _roc), (hist_name, _histograms)):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
        draw(ax, np.asarray(distances, np.float64), same, threshold)
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)
        paths.append(folder / name)
    return paths


def _roc(ax, distances: np.ndarray, same: np.ndarray, threshold: float) -> None:
    """TAR against FAR on a log FAR axis: the low-FAR end is where thresholds are chosen."""
    from service.evaluation.metrics import rates, roc_points

    _, far, tar = roc_points(distances, same)
    n_imp = int((~same).sum())
    floor = 0.5 / n_imp  # FAR 0 cannot sit on a log axis: drawn half a false accept below the first one
    ax.step(np.maximum(far, floor), tar, where="post", color="tab:blue", label="ROC")
    at = rates(distances, same, threshold)
    ax.plot([max(at["far"], floor)], [at["tar"]], "o", color="tab:red", markersize=8,
            label=f"threshold {threshold:g}: TAR {at['tar']:.3f}, FAR {at['far']:.4f}")
    ax.axvline(floor, color="grey", linestyle=":", linewidth=1)
    ax.annotate("FAR 0", (floor, 0.02), xytext=(4, 0), textcoords="offset points", color="grey", fontsize="small")
    ax.set_xscale("log")
    ax.set_xlim(floor * 0.4, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"false-accept rate (log; {n_imp} impostor pairs, FAR 0 drawn at {floor:.1g})")
    ax.set_ylabel(f"true-accept rate ({int(same.sum())} genuine pairs)")
    ax.set_title("ROC: accept when distance < threshold")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")


def _histograms(ax, distances: np.ndarray, same: np.ndarray, threshold: float) -> None:
    """Both distance distributions as densities (impostor pairs far outnumber genuine ones)."""
    bins = np.linspace(0, max(2.0, float(distances.max())), 81)
    ax.hist(distances[same], bins=bins, density=True, alpha=0.6, color="tab:green",
            label=f"genuine ({int(same.sum())} pairs)")
    ax.hist(distances[~same], bins=bins, density=True, alpha=0.6, color="tab:orange",
            label=f"impostor ({int((~same).sum())} pairs)")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("L2 distance between encodings")
    ax.set_ylabel("density")
    ax.set_title("Pair distances")
    ax.legend(loc="upper left", fontsize="small")
