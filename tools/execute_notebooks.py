"""Execute chapter notebooks in place, keeping their kernelspec, and write them atomically.

Usage: python tools/execute_notebooks.py notebooks/convergence.ipynb [...]
The profile comes from WT_PROFILE (the committed notebooks carry the `book` profile).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 1800) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh)
    os.replace(tmp, path)
    return seconds


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print(f"{arg}: {execute(Path(arg)):.0f} s (WT_PROFILE={os.environ.get('WT_PROFILE') or 'unset: archived chapters read results/, the others run book'})", flush=True)
