"""The book's figure style: colour-blind-safe, readable in print and on screen."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

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


FIGURES_DIR = Path(__file__).resolve().parents[3] / "book" / "_static" / "figures"
"""Where the vector copies of the chapters' figures go (``book/_static/figures``)."""


def export_figure(fig, chapter: str, number: int, *, profile: str, directory: Path | None = None) -> list[Path]:
    """Write ``fig`` as ``<chapter>-fig<number>.svg`` and ``.pdf`` (vector copies for slides, linked under
    the figure in the book).

    The files carry no date and a fixed SVG id salt, so the same figure gives the same bytes;
    each is written atomically.  A ``smoke`` run (the test suite's) writes nothing, so the copies
    always show the figure the book shows.  Returns the paths written.
    """
    if profile == "smoke":
        return []
    if not re.fullmatch(r"[a-z][a-z_]*", str(chapter)):
        raise ValueError(f"chapter = {chapter!r} must be a chapter name (lower-case letters and underscores)")
    if not isinstance(number, int) or number < 1:
        raise ValueError(f"number = {number!r} must be an integer >= 1")
    directory = Path(directory or FIGURES_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, metadata in (("svg", {"Date": None}), ("pdf", {"CreationDate": None, "ModDate": None})):
        path = directory / f"{chapter}-fig{number}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}-")
        os.close(fd)
        try:
            with mpl.rc_context({"svg.hashsalt": f"{chapter}-fig{number}"}):
                fig.savefig(tmp, format=ext, metadata=metadata)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; these are published
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths
