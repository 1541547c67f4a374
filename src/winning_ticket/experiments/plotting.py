"""The book's figure style: colour-blind-safe, readable in print and on screen."""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns

PALETTE = sns.color_palette("colorblind")
"""Seaborn's colour-blind-safe palette (Wong-style hues)."""
SEQUENTIAL = "viridis"
"""Perceptually uniform, colour-blind-safe and printable in grey scale."""


def use_book_style() -> None:
    """Apply the book's style to matplotlib (call once per notebook)."""
    sns.set_theme(context="notebook", style="ticks", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "lines.linewidth": 1.8,
            "figure.constrained_layout.use": True,
        }
    )


def sequential_colors(n: int) -> list:
    """``n`` colours of the sequential map, for curves indexed by an ordered parameter."""
    return sns.color_palette(SEQUENTIAL, n)


def label_axes(ax, xlabel: str, ylabel: str, title: str | None = None, *, legend: bool = False,
               xlim0: bool = False, ylim0: bool = False) -> None:
    """Axis labels (with units), a left-aligned panel title, an optional small legend and zero-based limits."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, loc="left")
    if xlim0:
        ax.set_xlim(left=0)
    if ylim0:
        ax.set_ylim(bottom=0)
    if legend:
        ax.legend(fontsize=8)
