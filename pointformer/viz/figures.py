"""matplotlib plumbing shared by the views: legends, figures to arrays and PNGs, overlays on renders.

Everything here uses the Agg backend, so it needs no display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .colors import LegendEntry


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_handles(entries: Sequence[LegendEntry]) -> list:
    """matplotlib handles for legend entries: filled squares, solid or dashed lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for entry in entries:
        if entry.style == "patch":
            handles.append(Patch(facecolor=entry.color, edgecolor=entry.color, label=entry.label))
        elif entry.style in ("line", "dashed"):
            handles.append(Line2D([], [], color=entry.color, lw=2, ls="-" if entry.style == "line" else "--",
                                  label=entry.label))
        else:
            raise ValueError(f"LegendEntry.style must be 'patch', 'line' or 'dashed', got {entry.style!r}")
    return handles


def draw_legend(ax, entries: Sequence[LegendEntry], loc: str = "upper right", fontsize: float = 8):
    """A dark legend listing ``entries`` on ``ax`` (nothing when there are none)."""
    if not entries:
        return None
    legend = ax.legend(handles=legend_handles(entries), loc=loc, fontsize=fontsize, facecolor="#222222",
                       labelcolor="white", framealpha=0.85)
    legend.get_frame().set_edgecolor("#888888")
    return legend


def figure_to_image(fig) -> np.ndarray:
    """The figure's pixels as an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write the figure to ``path`` (folders created) and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) uint8 image as a PNG (folders created)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path


def annotate_image(
    image: np.ndarray,
    *,
    legend: Sequence[LegendEntry] = (),
    title: str | None = None,
    texts: Sequence[tuple[float, float, str, str]] = (),
) -> np.ndarray:
    """Draw a legend (top right), a title (top left) and ``texts`` (u, v, text, colour) in
    image pixel coordinates over ``image``; returns an image of the same size, pixels elsewhere
    unchanged."""
    plt = pyplot()
    height, width = image.shape[:2]
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(image, interpolation="nearest", extent=(0, width, height, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for u, v, text, color in texts:
        ax.text(u, v, text, color=color, fontsize=7, ha="left", va="bottom")
    if title:
        ax.text(8, 8, title, color="white", fontsize=9, ha="left", va="top",
                bbox={"facecolor": "#222222", "edgecolor": "none", "alpha": 0.7})
    draw_legend(ax, legend)
    annotated = figure_to_image(fig)
    plt.close(fig)
    return annotated
