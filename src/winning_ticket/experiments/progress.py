"""Progress bars for long work, quiet under CI, nbval and the book build.

A bar is shown unless ``progress=False`` is passed, or the environment sets
``WT_PROGRESS=0`` (the Makefile does this for tests and book builds) or ``CI``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from tqdm import tqdm


def progress_enabled(flag: bool | None = None) -> bool:
    """Resolve the ``progress`` argument of long-running functions."""
    if flag is not None:
        return bool(flag)
    if os.environ.get("WT_PROGRESS", "").strip() in {"0", "false", "no", "off"}:
        return False
    return not os.environ.get("CI")


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enable: bool | None = None) -> Iterator[tqdm | None]:
    """A tqdm bar (or ``None`` when progress is disabled) closed on exit."""
    if not progress_enabled(enable):
        yield None
        return
    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        yield bar
    finally:
        bar.close()
