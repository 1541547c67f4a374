"""The printed book (`make pdf`): every chapter, its figures, typeset math, an outline and internal links.

Skipped when the PDF is not built, unless WT_REQUIRE_BROWSER=1 (as in `make test`, which builds it).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import nbformat
import pytest

from winning_ticket import chapters

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
PDF = ROOT / "_build" / "pdf" / "why-lottery-tickets-win.pdf"
RAW_TEX = ("\\frac", "\\sqrt", "\\mathbb", "\\begin{", "\\(", "\\[", "$$", "Math input error")


@pytest.fixture(scope="module")
def pdf():
    if not PDF.exists():
        if os.environ.get("WT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{PDF} is not built (make pdf)")
        pytest.skip(f"{PDF} is not built (make pdf)")
    from pypdf import PdfReader

    reader = PdfReader(PDF)
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return reader, text


def _outline_titles(items) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, list):
            out += _outline_titles(item)
        else:
            out.append(item.title)
    return out


def _norm(s: str) -> str:
    """Without whitespace (line breaks inside a heading come out with or without a space) and ligatures ("ﬂ")."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", s))


def test_every_chapter_is_in_the_text_and_the_outline(pdf):
    reader, text = pdf
    flat = _norm(text)
    outline = [_norm(t) for t in _outline_titles(reader.outline)]
    assert len(reader.pages) > 60
    for name in chapters.NAMES:
        title = chapters.get(name).title
        assert _norm(title)[:25] in flat, f"chapter {name} is missing from the PDF text"  # titles may end in math
        assert any(_norm(title)[:25] in t for t in outline), f"chapter {name} is missing from the PDF outline"
    for page in ("Status of the evidence", "Course map for lecturers", "Bibliography"):
        assert _norm(page) in flat


def test_math_is_typeset_not_raw(pdf):
    _, text = pdf
    found = [t for t in RAW_TEX if t in text]
    assert not found, f"raw TeX in the PDF: {found}"


def test_figures_are_embedded(pdf):
    reader, _ = pdf
    figures = sum(1 for p in (ROOT / "notebooks").glob("*.ipynb") for c in nbformat.read(p, as_version=4).cells
                  if c.cell_type == "code" and "figure" in c.metadata.get("mystnb", {}))
    images = sum(len(page.images) for page in reader.pages)
    assert images >= figures >= 12


def test_internal_links_work(pdf):
    reader, _ = pdf
    internal = 0
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            a = annot.get_object()
            if a.get("/Subtype") == "/Link" and ("/Dest" in a or a.get("/A", {}).get("/S") == "/GoTo"):
                internal += 1
    assert internal > 50, f"only {internal} internal links"
