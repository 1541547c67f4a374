"""The command-line scripts (tools/, benchmarks/) import and answer --help: a rename cannot break them silently."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(str(p.relative_to(ROOT)) for d in ("tools", "benchmarks") for p in (ROOT / d).glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
    if script.endswith("execute_notebooks.py"):
        out = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True)
        assert "Usage" in out.stderr + out.stdout
        return
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _status_page():
    return _load("status_page")


def test_the_status_page_is_current():
    # generated from results/*/provenance.json, audit.json and the notebooks: regenerate it after archiving
    assert _status_page().main(["--check"]) == 0, "run `python tools/status_page.py`"


def test_the_status_page_reads_the_records(tmp_path, monkeypatch):
    import json

    from winning_ticket.experiments import archive

    sp = _status_page()
    text = sp.page()
    for name in ("landscape", "imp_mnist", "strong_tickets"):
        assert f"notebooks/{name}`" in text
    # a recorded audit shows on the page, a failed one loudly
    monkeypatch.setattr(archive, "RESULTS_DIR", tmp_path)
    (tmp_path / "landscape").mkdir()
    report = archive.AuditReport(chapter="landscape", checked=7, mismatches=["task 1: differs"], digest_ok=True, seconds=3.0)
    path = archive.record_audit(report, samples=10, quick=False)
    rec = json.loads(path.read_text())
    assert rec["ok"] is False and rec["checked"] == 7 and archive.last_audit("landscape") == rec
    assert "**FAILED**: 7 units re-executed" in sp._audit_cell(rec)
    assert archive.last_audit("noise") is None and "not recorded" in sp._audit_cell(None)
    # and a recorded precision check beside it, different verdicts loudly
    check = archive.AuditReport(chapter="landscape", checked=3, mismatches=["task 2 trial 1: status differ"],
                                digest_ok=True, seconds=2.0, precision="mixed", runs=40, drift={"final_error": 2e-6})
    prec = json.loads(archive.record_audit(check, samples=10, quick=False).read_text())
    assert archive.last_precision_check("landscape") == prec and prec["rows"] == 40 and prec["drift"] == {"final_error": 2e-6}
    assert "mixed precision: **different verdicts** in 40 rows of 3 units" in sp._audit_cell(rec, prec)
    assert archive.last_audit("landscape") == rec  # the audit's own record is untouched
    # notebook execution time from the committed cell metadata
    nb = tmp_path / "x.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"metadata": {"execution": {"iopub.execute_input": "2026-01-01T00:00:00Z", "shell.execute_reply": "2026-01-01T00:00:02Z"}}},
        {"metadata": {"execution": {"iopub.execute_input": "2026-01-01T00:00:03Z", "shell.execute_reply": "2026-01-01T00:01:30Z"}}},
        {"metadata": {}}]}))
    assert sp.notebook_seconds(nb) == 90.0


def test_student_notebooks_have_exercises_but_no_solutions_or_outputs(tmp_path):
    import nbformat

    out = subprocess.run([sys.executable, "tools/student_notebooks.py", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    originals = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in originals]
    for path in originals:
        orig = nbformat.read(path, as_version=4)
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        text = "\n".join(c.source for c in copy.cells if c.cell_type == "markdown")
        orig_text = "\n".join(c.source for c in orig.cells if c.cell_type == "markdown")
        assert ":::{solution}" not in text
        assert text.count(":::{exercise}") == orig_text.count(":::{exercise}") > 0
        assert text.count("omitted in the student copy") == orig_text.count(":::{solution}")
        assert all(not c.outputs for c in copy.cells if c.cell_type == "code")
        assert [c.source for c in copy.cells if c.cell_type == "code"] == [c.source for c in orig.cells if c.cell_type == "code"]


def test_strip_solutions_handles_nesting_and_refuses_an_open_block():
    mod = _load("student_notebooks")
    text = "a\n:::{exercise}\nq\n:::\n\n::::{solution} x\n:::{note}\nn\n:::\nanswer\n::::\nb"
    stripped, n = mod.strip_solutions(text)
    assert n == 1 and "answer" not in stripped and stripped.startswith("a\n:::{exercise}") and stripped.endswith("b")
    with pytest.raises(ValueError, match="unclosed"):
        mod.strip_solutions(":::{solution} x\nnever closed")


def test_the_course_map_lists_every_exercise_once():
    import re

    import nbformat

    labels = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        labels += re.findall(r":::\{exercise\}\n:label: (\S+)", text)
    listed = re.findall(r"\{ref\}`(ex-[\w-]+)`", (ROOT / "book" / "course.md").read_text())
    assert sorted(listed) == sorted(labels), "book/course.md must list every exercise exactly once"


def test_make_lab_opens_a_chapter_and_refuses_an_unknown_one():
    dry = subprocess.run(["make", "-n", "lab", "CHAPTER=convergence"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "jupyter-lab convergence.ipynb" in dry.stdout and "jupyterlab==" in dry.stdout
    bad = subprocess.run(["make", "lab", "CHAPTER=nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "CHAPTER=nope is not a chapter" in bad.stderr and "convergence" in bad.stderr


def test_reproduce_checks_the_code_as_the_files_are_now():
    """The end-of-run check reads the files in a fresh interpreter: equal to the in-process state when
    nothing was edited (an in-process re-read of an edited file digests stale line numbers)."""
    from winning_ticket import chapters
    from winning_ticket.experiments import archive

    now = _load("reproduce")._code_state_now("imp_mnist")
    here = archive.code_state(chapters.get("imp_mnist"))
    assert (now["source_digest"], now["task_digests"]) == (here["source_digest"], here["task_digests"])
