"""Plotting functions shared by the demo, the CLI and the tutorials; each returns a matplotlib Figure.

One style throughout: labelled axes with units, a title, a legend, and the colour-blind-safe
Okabe-Ito palette (lines and bars) or viridis (surfaces). Inputs are host arrays or lists.
"""

import math
import os

import matplotlib

matplotlib.use("Agg", force=False)  # files, not windows: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.colors import Normalize  # noqa: E402

from minikd.engine import backend  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


SIZE = (6.4, 4.0)


def _axes(title, xlabel, ylabel, size=SIZE):
    fig, ax = plt.subplots(figsize=size, dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _finish(fig, ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _references(ax, reference):
    """Dashed horizontal lines for ``reference`` = (y, label) or a list of them; returns their handles."""
    references = [reference] if isinstance(reference, tuple) else reference or []
    return [ax.axhline(value, linestyle=("--", ":", "-.")[k % 3], color="0.4", label=label)
            for k, (value, label) in enumerate(references)]


def line_plot(x, series, title, xlabel, ylabel, logx=False, logy=False, reference=None, errors=None):
    """One line per entry of ``series`` ({label: y values}) over the shared ``x``; ``reference``
    = (y, label) or a list of them adds dashed horizontal lines; ``errors`` ({label: ± values})
    draws error bars (e.g. one standard deviation over seeds)."""
    fig, ax = _axes(title, xlabel, ylabel)
    handles = []  # in drawing order (matplotlib would list error-bar containers after plain lines)
    for colour, (label, y) in zip(OKABE_ITO, series.items()):
        handles.append(ax.errorbar(x, y, yerr=(errors or {}).get(label), marker="o", markersize=3, capsize=3,
                                   color=colour, label=label))
    handles += _references(ax, reference)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.legend(handles=handles, frameon=False)
    fig.tight_layout()
    return fig


def grouped_bars(categories, groups, title, xlabel, ylabel, reference=None):
    """Bars of several groups ({label: one value per category}) side by side over ``categories``;
    ``reference`` as in ``line_plot``."""
    fig, ax = _axes(title, xlabel, ylabel, size=(7.2, 4.0))
    width = 0.8 / len(groups)
    for k, (colour, (label, values)) in enumerate(zip(OKABE_ITO, groups.items())):
        offsets = [i + (k - (len(groups) - 1) / 2) * width for i in range(len(categories))]
        ax.bar(offsets, values, width=width, color=colour, label=label)
    _references(ax, reference)
    crowded = len(categories) > 6 or max(len(str(c)) for c in categories) > 12
    ax.set_xticks(range(len(categories)), categories, rotation=25 if crowded else 0, ha="right" if crowded else "center")
    return _finish(fig, ax)


def heatmap(values, xticks, yticks, title, xlabel, ylabel, colorbar_label, fmt="{:.3f}"):
    """A (len(yticks), len(xticks)) grid of numbers as colours, each cell labelled with its value."""
    fig, ax = _axes(title, xlabel, ylabel)
    ax.grid(False)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xticks)), [f"{t:.3g}" for t in xticks])
    ax.set_yticks(range(len(yticks)), [f"{t:.3g}" for t in yticks])
    low, high = min(map(min, values)), max(map(max, values))
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            light = high > low and (value - low) / (high - low) < 0.5
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8, color="white" if light else "black")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    return _finish(fig, ax)


def contour_panels(panels, title, xlabel, ylabel, colorbar_label, levels=20):
    """Side-by-side filled contour plots sharing one colour scale; ``panels`` maps a subtitle to
    (X, Y, Z) grids; a panel may add a fourth item, a point (x, y) to mark (e.g. a minimum)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.0, 4.0), dpi=100, squeeze=False,
                             layout="constrained")
    low = min(float(p[2].min()) for p in panels.values())
    high = max(float(p[2].max()) for p in panels.values())
    for ax, (subtitle, panel) in zip(axes[0], panels.items()):
        X, Y, Z = panel[:3]
        filled = ax.contourf(X, Y, Z, levels=levels, cmap="viridis", vmin=low, vmax=high)
        if len(panel) > 3:
            ax.plot(*panel[3], marker="*", markersize=12, color=OKABE_ITO[1], markeredgecolor="black")
        ax.set_title(subtitle)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    fig.colorbar(filled, ax=axes[0].tolist(), label=colorbar_label)
    fig.suptitle(title)
    return fig


def simplex_panels(panels, title, corner_labels=("class 0", "class 1", "class 2"), colorbar_label="loss"):
    """Functions on the probability simplex of 3 classes, one triangle per panel.

    ``panels`` maps a subtitle to (q, values[, marks]): q (n, 3) points of the simplex, the value at
    each, and optional {label: (3,) point} to mark. Corner k of each triangle is the one-hot class k.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=100, squeeze=False)
    for ax, (subtitle, panel) in zip(axes[0], panels.items()):
        q, values = panel[0], panel[1]
        x, y = _barycentric(q)
        filled = ax.tricontourf(x, y, values, levels=20, cmap="viridis")
        fig.colorbar(filled, ax=ax, shrink=0.7, pad=0.02, label=colorbar_label)  # each panel has its own scale
        for colour, (label, point) in zip(OKABE_ITO[1:], (panel[2] if len(panel) > 2 else {}).items()):
            px, py = _barycentric([point])
            ax.plot(px, py, marker="*", markersize=12, color=colour, markeredgecolor="black", linestyle="", label=label)
        for k, (cx, cy) in enumerate(((0, 0), (1, 0), (0.5, math.sqrt(3) / 2))):
            ax.annotate(corner_labels[k], (cx, cy), ha="center", va="top" if cy == 0 else "bottom", fontsize=8)
        ax.set_title(subtitle, fontsize=10)
        ax.set_xlim(-0.12, 1.12)
        ax.set_ylim(-0.12, 0.98)  # room for the corner labels
        ax.set_aspect("equal")
        ax.axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"{title} (colour: {colorbar_label}; darker is lower)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _barycentric(q):
    """Simplex points (q0, q1, q2) -> plane coordinates: corners at (0, 0), (1, 0), (½, √3/2)."""
    x = [p[1] + p[2] / 2 for p in q]
    y = [p[2] * math.sqrt(3) / 2 for p in q]
    return x, y


def training_curves(histories, metric="val_loss", floor=None, title=None, ylabel=None, logy=False):
    """One line per run of ``metric`` against the training step.

    ``histories`` maps a label to a list of evaluation records (as ``train.train`` returns);
    ``floor``, if given, is drawn as a dashed line (e.g. the grammar's entropy floor); ``logy`` puts
    the values on a log axis (for values that span decades).
    """
    fig, ax = _axes(title or metric.replace("_", " "), "training step", ylabel or metric.replace("_", " "))
    ax.set_yscale("log" if logy else "linear")
    for colour, (label, history) in zip(OKABE_ITO, histories.items()):
        points = [(r["step"], r[metric]) for r in history if r.get(metric) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color=colour, label=label)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="0.4", label=f"entropy floor ({floor:.3f})")
    return _finish(fig, ax)


def save(fig, path):
    """Write a figure as PNG (fixed dpi and metadata, so the same data gives the same file) and close it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def shared_contours(panels, title, xlabel, ylabel, colorbar_label, levels=20):
    """Filled contours side by side on one colour scale: the same ``levels`` + 1 level boundaries,
    from the lowest to the highest value over all panels, so a colour means the same loss in every
    panel and the one colourbar is right for all. ``panels`` maps a subtitle to (X, Y, Z[, (x, y)])."""
    np = backend.host_xp()
    low = min(float(np.min(p[2])) for p in panels.values())
    high = max(float(np.max(p[2])) for p in panels.values())
    bounds = np.linspace(low, high if high > low else low + 1e-12, levels + 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.0, 4.0), dpi=100, squeeze=False,
                             layout="constrained")
    for ax, (subtitle, panel) in zip(axes[0], panels.items()):
        filled = ax.contourf(*panel[:3], levels=bounds, cmap="viridis")
        ax.contour(*panel[:3], levels=bounds[::4], colors="white", linewidths=0.5, alpha=0.6)
        if len(panel) > 3:
            ax.plot(*panel[3], marker="*", markersize=12, color=OKABE_ITO[1], markeredgecolor="black")
        ax.set_title(subtitle)
        ax.set_xlabel(xlabel)
        ax.set_aspect("equal")
    axes[0][0].set_ylabel(ylabel)
    fig.colorbar(filled, ax=axes[0].tolist(), label=colorbar_label)
    fig.suptitle(title)
    return fig


def surface_panels(panels, title, xlabel, ylabel, zlabel):
    """3-D surfaces side by side, sharing the z axis and the colour scale (one colourbar);
    ``panels`` maps a subtitle to (X, Y, Z)."""
    np = backend.host_xp()
    low = min(float(np.min(p[2])) for p in panels.values())
    high = max(float(np.max(p[2])) for p in panels.values())
    norm = Normalize(low, high if high > low else low + 1e-12)
    fig = plt.figure(figsize=(4.6 * len(panels) + 1.0, 4.2), dpi=100, layout="constrained")
    axes = []
    for k, (subtitle, (X, Y, Z)) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d")
        surface = ax.plot_surface(X, Y, Z, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        ax.set_zlim(norm.vmin, norm.vmax)
        ax.set_title(subtitle)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_zlabel(zlabel)
        axes.append(ax)
    fig.colorbar(surface, ax=axes, label=zlabel, shrink=0.7)
    fig.suptitle(title)
    return fig


def heatmap_by_column(values, xticks, yticks, title, xlabel, ylabel, fmt="{:.3f}"):
    """A heatmap whose colours are normalised within each column (0 = that column's lowest value,
    1 = its highest): for grids whose columns are on different scales, such as an objective at
    several temperatures. Each cell is labelled with its actual value."""
    np = backend.host_xp()
    values = np.asarray(values, dtype=float)
    low, high = values.min(axis=0, keepdims=True), values.max(axis=0, keepdims=True)
    relative = (values - low) / np.where(high > low, high - low, 1.0)
    fig, ax = _axes(title, xlabel, ylabel)
    ax.grid(False)
    image = ax.imshow(relative, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(xticks)), [f"{t:.3g}" for t in xticks])
    ax.set_yticks(range(len(yticks)), [f"{t:.3g}" for t in yticks])
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                    color="white" if relative[i, j] < 0.5 else "black")
    fig.colorbar(image, ax=ax, label="within its column: 0 = lowest, 1 = highest")
    return _finish(fig, ax)
