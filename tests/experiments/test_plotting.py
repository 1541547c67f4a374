"""Vector copies of the figures: stable names, same bytes for the same figure, none from smoke runs,
and every figure of the book has its copies committed and linked under it."""

import hashlib
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pytest

from winning_ticket import export_figure
from winning_ticket.experiments.plotting import FIGURES_DIR

ROOT = Path(__file__).resolve().parents[2]


def _figure(slope=1.0):
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, slope, 2 * slope])
    ax.set_xlabel("x (units)")
    return fig


def test_export_is_deterministic_and_named_stably(tmp_path):
    first = export_figure(_figure(), "noise", 2, profile="book", directory=tmp_path)
    assert [p.name for p in first] == ["noise-fig2.svg", "noise-fig2.pdf"]
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in first]
    again = export_figure(_figure(), "noise", 2, profile="evidence", directory=tmp_path)
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in again] == digest
    other = export_figure(_figure(2.0), "noise", 2, profile="book", directory=tmp_path)
    assert hashlib.sha256(other[0].read_bytes()).hexdigest() != digest[0]
    assert first[0].read_text().lstrip().startswith("<?xml") and first[1].read_bytes().startswith(b"%PDF")
    assert first[0].stat().st_mode & 0o044  # readable by the web server
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_smoke_runs_export_nothing_and_bad_names_are_refused(tmp_path):
    assert export_figure(_figure(), "noise", 1, profile="smoke", directory=tmp_path) == []
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="chapter"):
        export_figure(_figure(), "../x", 1, profile="book", directory=tmp_path)
    with pytest.raises(ValueError, match="number"):
        export_figure(_figure(), "noise", 0, profile="book", directory=tmp_path)


def test_every_book_figure_has_committed_vector_copies_linked_under_it():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        chapter = path.stem
        cells = nbformat.read(path, as_version=4).cells
        number = 0
        for i, cell in enumerate(cells):
            if cell.cell_type != "code" or "figure" not in cell.metadata.get("mystnb", {}):
                continue
            number += 1
            assert re.search(rf'export_figure\(fig, "{chapter}", {number}, ', cell.source), f"{chapter} figure {number}"
            link = cells[i + 1].source
            for ext in ("svg", "pdf"):
                assert f"figures/{chapter}-fig{number}.{ext}>`" in link
                assert (FIGURES_DIR / f"{chapter}-fig{number}.{ext}").is_file(), f"{chapter}-fig{number}.{ext} not committed"
