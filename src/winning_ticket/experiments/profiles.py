"""Profiles choose problem sizes: ``smoke``, ``book`` (default) or ``paper``.

* ``smoke``: seconds; a pipeline check used by the test suite (nbval).
* ``book``: what the published book shows; each chapter runs in at most
  about 3 minutes on 2 CPU cores.
* ``evidence``: the chapter's archived evidence run (``results/<chapter>``): the paper's
  grids with enough trials for each claim's test; made by ``make reproduce``.
* ``paper``: the paper's sizes and trial counts; may need a GPU.

Select one with the environment variable ``WT_PROFILE``; without it a chapter that has an
archived evidence run uses ``evidence`` (read from the archive, no computation) and the
others ``book``.  Every chapter prints the profile that produced its figures.
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd

PROFILES = ("smoke", "book", "evidence", "paper")
DEFAULT_PROFILE = "book"


def current_profile(profile: str | None = None, default: str = DEFAULT_PROFILE) -> str:
    """``profile`` if given, else ``$WT_PROFILE`` (unless empty), else ``default``; validated."""
    name = profile if profile is not None else (os.environ.get("WT_PROFILE", "").strip() or default)
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"WT_PROFILE / profile = {name!r} is not a profile; allowed: {', '.join(PROFILES)}")
    return name


def config_table(config) -> pd.DataFrame:
    """A chapter configuration (a dataclass) as a two-column parameter table for the notebook."""

    def fmt(v) -> str:
        if isinstance(v, tuple):
            return ", ".join(fmt(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    d = dataclasses.asdict(config)
    return pd.DataFrame({"value": [fmt(v) for v in d.values()]}, index=pd.Index(list(d), name="parameter"))
