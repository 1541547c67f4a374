"""Write student copies of the chapter notebooks: no solutions, no outputs.

Usage: python tools/student_notebooks.py [--out _build/student-notebooks] [NOTEBOOK ...]

Every ``:::{solution}`` block is replaced by a one-line note (the exercises stay), and every code
cell loses its outputs and execution count, so students produce the figures and verdicts
themselves.  The copies are valid notebooks that run from the repository's ``notebooks/`` folder
(copy them there, or add ``src`` to the path).  ``make student-notebooks`` runs this.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OPEN = re.compile(r"^(:{3,})\{(\w[\w-]*)\}")
NOTE = "*(The solution is omitted in the student copy.)*"


def strip_solutions(text: str) -> tuple[str, int]:
    """``text`` without its ``:::{solution}`` blocks (each replaced by :data:`NOTE`), and how many were removed."""
    out, removed, lines, i = [], 0, text.split("\n"), 0
    while i < len(lines):
        m = OPEN.match(lines[i])
        if m and m.group(2) == "solution":
            fence, depth = m.group(1), 1
            i += 1
            while i < len(lines) and depth:
                inner = OPEN.match(lines[i])
                if inner and len(inner.group(1)) == len(fence):
                    depth += 1
                elif lines[i].strip() == fence:
                    depth -= 1
                i += 1
            if depth:
                raise ValueError(f"unclosed solution block opened with {fence!r}")
            out.append(NOTE)
            removed += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out), removed


def student_copy(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` without solutions and without outputs; returns it and the number of solutions removed."""
    nb = nbformat.from_dict(nb)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, n = strip_solutions(cell.source)
            removed += n
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    return nb, removed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "student-notebooks")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        copy, removed = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(copy)
        target = args.out / path.name
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(copy, tmp)
        tmp.replace(target)
        print(f"{target}: {removed} solution(s) removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
