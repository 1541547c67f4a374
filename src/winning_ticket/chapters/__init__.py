"""The chapters: one module per chapter notebook, each following the chapter protocol.

Every module here defines a config, a result, ``run``, ``check_claims`` and figure
functions, and registers them as ``CHAPTER`` (:class:`~winning_ticket.experiments.chapter.ChapterSpec`);
see :mod:`winning_ticket.experiments.chapter` for the protocol and ``CONTRIBUTING.md`` for
how to add a chapter.  The module name equals the notebook's (``notebooks/<name>.ipynb``).
"""

from __future__ import annotations

import importlib

NAMES = (
    "landscape",
    "convergence",
    "sample_complexity",
    "noise",
    "initialization",
    "imp_synthetic",
    "imp_mnist",
    "greedy_pruning",
    "strong_tickets",
)
"""Every chapter, in the book's order."""


def get(name: str):
    """The :class:`~winning_ticket.experiments.chapter.ChapterSpec` of chapter ``name``."""
    if name not in NAMES:
        raise ValueError(f"chapter = {name!r} is not a chapter; allowed: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").CHAPTER
