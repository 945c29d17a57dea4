"""Plotting functions shared by the demo, the CLI and the tutorials; each returns a matplotlib Figure.

One style throughout: labelled axes with units, a title, a legend, and the colour-blind-safe
Okabe-Ito palette.
"""

import matplotlib

matplotlib.use("Agg", force=False)  # files, not windows: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def training_curves(histories, metric="val_loss", floor=None, title=None, ylabel=None):
    """One line per run of ``metric`` against the training step.

    ``histories`` maps a label to a list of evaluation records (as ``train.train`` returns);
    ``floor``, if given, is drawn as a dashed line (e.g. the grammar's entropy floor).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for colour, (label, history) in zip(OKABE_ITO, histories.items()):
        points = [(r["step"], r[metric]) for r in history if r.get(metric) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color=colour, label=label)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="0.4", label=f"entropy floor ({floor:.3f})")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    ax.set_title(title or metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write a figure as PNG (fixed dpi and metadata, so the same data gives the same file) and close it."""
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
