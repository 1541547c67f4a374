"""The evidence archive: round trip, provenance, exact audit, and refusal of changed code."""

import json

import numpy as np
import pandas as pd
import pytest

from winning_ticket import chapters
from winning_ticket.chapters import convergence as cv
from winning_ticket.experiments import archive


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    spec = chapters.get("convergence")
    config = cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4, 8), ratio_r_values=(4,), trials=3, profile="smoke")
    result = spec.run(config, progress=False)
    archive.save(spec, result, root=root)
    return spec, result, root


def test_round_trip_is_exact_and_provenance_is_complete(archived):
    spec, result, root = archived
    back = archive.load(spec, root)
    cols = [c for c in result.runs.columns if c != "history"]
    pd.testing.assert_frame_equal(back.result.runs[cols], result.runs[cols], check_exact=True)
    for a, b in zip(back.result.runs["history"], result.runs["history"]):
        assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
    assert back.result.config == result.config
    prov = json.loads((root / "convergence" / "provenance.json").read_text())
    for key in ("package_version", "source_digest", "git_commit", "profile", "config", "trials_per_cell",
                "machine", "wall_seconds", "compute_seconds", "date", "tables"):
        assert key in prov
    assert prov["trials_per_cell"] == 3 and prov["machine"]["torch"].startswith("2.13")
    assert [c.verdict for c in cv.check_claims(back.result)] == [c.verdict for c in cv.check_claims(result)]
    assert "trials per cell" in back.caption()


def test_audit_reexecutes_runs_exactly(archived):
    spec, _, root = archived
    report = archive.audit(spec, samples=3, root=root)
    assert report.ok and report.checked >= 3 and "OK" in report.line()


def test_audit_fails_after_a_change_to_the_algorithms(archived, monkeypatch):
    spec, _, root = archived
    monkeypatch.setattr(archive, "package_digest", lambda *modules: "changed")
    report = archive.audit(spec, samples=1, root=root)
    assert not report.ok and "convergence: FAILED" in report.line() and "make reproduce CHAPTER=convergence" in report.line()


def test_audit_finds_a_tampered_run(archived, tmp_path):
    spec, result, root = archived
    runs = result.runs.copy()
    runs.loc[:, "final_error"] = runs["final_error"] * (1 + 1e-15) + 1e-300
    archive.save(spec, cv.ConvergenceResult(config=result.config, runs=runs, ratio_runs=result.ratio_runs), root=tmp_path)
    report = archive.audit(spec, samples=100, root=tmp_path)
    assert not report.ok and any("final_error" in m for m in report.mismatches)


def test_load_or_run_uses_the_archive_only_for_its_config(archived, monkeypatch):
    spec, result, root = archived
    monkeypatch.setattr(archive, "RESULTS_DIR", root)
    same, arch = archive.load_or_run(spec, result.config)
    assert arch is not None and same.runs["final_error"].equals(result.runs["final_error"])
    live, arch = archive.load_or_run(spec, result.config.replace(trials=1), progress=False)
    assert arch is None and len(live.runs) == 2 * len(cv.METHODS) * 1


def test_missing_archive_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reproduce CHAPTER=noise"):
        archive.load(chapters.get("noise"), tmp_path)


def test_quick_audit_takes_the_cheapest_units(archived):
    spec, result, root = archived
    report = archive.audit(spec, samples=2, root=root, quick=True)
    assert report.ok and report.checked == 2 * len(spec.sweeps(result.config))  # per sweep


def test_an_incomplete_archive_fails_the_audit(archived, tmp_path):
    spec, result, root = archived
    part = result.runs[result.runs["trial"] != 2].reset_index(drop=True)
    archive.save(spec, cv.ConvergenceResult(config=result.config, runs=part, ratio_runs=result.ratio_runs), root=tmp_path)
    report = archive.audit(spec, samples=1, root=tmp_path)
    assert not report.ok and any("holds 4 of the 6" in m for m in report.mismatches)


def test_an_edited_table_or_task_is_caught(archived, tmp_path, monkeypatch):
    spec, result, root = archived
    archive.save(spec, result, root=tmp_path)
    table = tmp_path / "convergence" / "runs.parquet"
    frame = pd.read_parquet(table)
    frame.loc[0, "iterations"] += 1
    frame.to_parquet(table, index=False)
    with pytest.raises(ValueError, match="does not match its provenance record"):
        archive.load(spec, tmp_path)
    monkeypatch.setattr(archive, "_source_digest", lambda fn: "edited")
    report = archive.audit(spec, samples=1, root=root)
    assert not report.ok and any("task function convergence_task changed" in m for m in report.mismatches)


def test_audit_needs_a_sample():
    with pytest.raises(ValueError, match="samples"):
        archive.audit(chapters.get("convergence"), samples=0)


def test_a_chapter_depends_only_on_the_algorithms_it_imports():
    conv = archive.chapter_algorithms(chapters.get("convergence"))
    assert {"agd", "engine", "teacher_student", "rates"} <= set(conv) and "matrix_sensing" not in conv
    assert archive.chapter_algorithms(chapters.get("greedy_pruning")) == ["matrix_sensing"]
    from winning_ticket.experiments.sweep import package_digest

    assert package_digest(conv) != package_digest(conv[:-1]) != package_digest()


def test_audit_reruns_with_the_kernel_that_made_the_archive(tmp_path, monkeypatch):
    """An archive records the engine kernel and CPU chunk size; the audit re-executes with them
    (archives made before the fused kernel existed record no kernel and were made by the torch
    kernel; archives made before the chunk was recorded used 48 MiB chunks)."""
    spec = chapters.get("convergence")
    config = cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4,), ratio_r_values=(4,), trials=2, profile="smoke")
    monkeypatch.setenv("WT_KERNEL", "torch")
    monkeypatch.setenv("WT_CHUNK_BYTES", "123456")
    archive.save(spec, spec.run(config, progress=False), root=tmp_path)
    path = tmp_path / "convergence" / "provenance.json"
    prov = json.loads(path.read_text())
    assert prov["machine"]["engine_kernel"] == "torch" and prov["machine"]["engine_chunk_bytes"] == 123456
    from winning_ticket.algorithms import kernels  # and what the fused kernel's layouts were

    assert prov["machine"]["engine_blocks_max_r"] == kernels.BLOCKS_MAX_R
    assert prov["machine"]["numba"] == kernels.numba.__version__
    seen = []
    real = archive._run_unit

    def spy(*args, **kwargs):
        import os
        seen.append((os.environ["WT_KERNEL"], os.environ["WT_CHUNK_BYTES"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "_run_unit", spy)
    monkeypatch.setenv("WT_KERNEL", "fused")
    monkeypatch.delenv("WT_CHUNK_BYTES")
    assert archive.audit(spec, samples=2, root=tmp_path).ok
    assert seen and set(seen) == {("torch", "123456")}
    seen.clear()
    del prov["machine"]["engine_kernel"], prov["machine"]["engine_chunk_bytes"]
    path.write_text(json.dumps(prov))
    assert archive.audit(spec, samples=2, root=tmp_path).ok
    assert seen and set(seen) == {("torch", str(48 << 20))}
    import os
    assert os.environ["WT_KERNEL"] == "fused" and "WT_CHUNK_BYTES" not in os.environ  # restored


def test_recertify_accepts_changed_code_only_when_runs_reexecute_exactly(tmp_path, monkeypatch):
    spec = chapters.get("convergence")
    config = cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4,), ratio_r_values=(4,), trials=2, profile="smoke")
    result = spec.run(config, progress=False)
    archive.save(spec, result, root=tmp_path)
    ok = archive.audit(spec, samples=2, root=tmp_path)
    with pytest.raises(ValueError, match="nothing to recertify"):
        archive.recertify(spec, ok, samples=2, quick=False, root=tmp_path)
    monkeypatch.setattr(archive, "package_digest", lambda *modules: "newcode")
    changed = archive.audit(spec, samples=2, root=tmp_path)
    assert not changed.ok and changed.algorithm_changed and changed.checked >= 1
    archive.recertify(spec, changed, samples=2, quick=False, root=tmp_path)
    prov = json.loads((tmp_path / "convergence" / "provenance.json").read_text())
    assert prov["source_digest"] == "newcode"
    assert prov["recertified"][0]["from_source_digest"] != "newcode"
    assert prov["recertified"][0]["units_reexecuted_bitwise_equal"] == changed.checked
    assert prov["algorithm_modules"] == prov["recertified"][0]["to_algorithm_modules"] == archive.chapter_algorithms(spec)
    assert archive.audit(spec, samples=2, root=tmp_path).ok
    # changed code that changes a number is refused
    monkeypatch.setattr(archive, "package_digest", lambda *modules: "othercode")
    runs = result.runs.copy()
    runs.loc[:, "final_error"] = runs["final_error"] * 2
    archive.save(spec, cv.ConvergenceResult(config=result.config, runs=runs, ratio_runs=result.ratio_runs),
                 root=tmp_path / "b", source_digest="oldcode")
    bad = archive.audit(spec, samples=2, root=tmp_path / "b")
    assert bad.algorithm_changed
    with pytest.raises(ValueError, match="cannot recertify.*final_error"):
        archive.recertify(spec, bad, samples=2, quick=False, root=tmp_path / "b")


def test_quick_audit_leaves_out_long_units_and_says_so(archived, monkeypatch):
    spec, _, root = archived
    monkeypatch.setattr(archive, "QUICK_MAX_SECONDS", -1.0)
    report = archive.audit(spec, samples=3, root=root, quick=True)
    assert report.ok and report.checked == 0 and set(report.skipped) == {"runs", "ratio_runs"}
    assert "left out of the quick audit" in report.line()
    full = archive.audit(spec, samples=3, root=root)
    assert full.checked >= 3 and not full.skipped


def test_precision_check_compares_the_verdicts(archived, tmp_path, monkeypatch):
    """The precision check re-executes units in mixed precision and compares only the verdicts: the
    archive passes it (with some drift in the errors, and a changed algorithm digest is not a problem
    for it); one flipped status or success fails it, naming the run and the column; a chapter's
    verdict columns are status, success and the flags, never iterations or errors."""
    spec, result, root = archived
    report = archive.audit(spec, samples=100, root=root, precision="mixed")
    assert report.ok and report.runs == len(result.runs) + len(result.ratio_runs)
    assert report.drift.get("final_error", 0.0) > 0.0  # the float32 phase ran
    assert "re-executed in mixed precision, verdicts as archived" in report.line()
    monkeypatch.setattr(archive, "package_digest", lambda *modules: "changed")
    assert archive.audit(spec, samples=1, root=root, precision="mixed").ok
    monkeypatch.undo()
    runs = result.runs.copy()
    flip = runs.index[runs["success"]][0]
    runs.loc[flip, "success"] = False
    archive.save(spec, cv.ConvergenceResult(config=result.config, runs=runs, ratio_runs=result.ratio_runs), root=tmp_path)
    bad = archive.audit(spec, samples=100, root=tmp_path, precision="mixed")
    assert not bad.ok and any("success differ (success False -> True, " in m and "iterations " in m and "final_error" in m
                              for m in bad.mismatches)
    assert bad.flips == 1 and f"1 of {bad.runs} verdicts differ" in bad.line()
    path = archive.record_audit(bad, samples=100, quick=False, root=tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "precision_check.json" and record["precision"] == "mixed" and not record["ok"]
    assert record["flips"] == 1 and record["rows"] == bad.runs
    monkeypatch.setenv("WT_PRECISION", "mixed")  # an archive made in mixed precision is no reference for the check
    archive.save(spec, result, root=tmp_path / "mixed")
    monkeypatch.delenv("WT_PRECISION")
    vacuous = archive.audit(spec, samples=1, root=tmp_path / "mixed", precision="mixed")
    assert not vacuous.ok and any("made in mixed precision" in m for m in vacuous.mismatches)
    assert [c for c in ("status", "success", "flagged", "recovered", "success_tensor") if not archive.verdict_column(c)] == []
    assert not any(archive.verdict_column(c) for c in ("iterations", "final_error", "iterations_tensor", "trial"))
    with pytest.raises(ValueError, match="precision = 'half'"):
        archive.audit(spec, samples=1, root=root, precision="half")


def test_mixed_precision_runs_only_chapters_whose_precision_check_passed(tmp_path, monkeypatch):
    """``WT_PRECISION=mixed`` runs an engine chapter's sweep only where its last recorded precision
    check passed: a missing or failed record is refused with an error naming the setting, the chapter
    and the record; a passed one, float64, a chapter without the engine and a task function outside
    the chapters are let through; the refusal comes before any unit runs."""
    from winning_ticket.chapters import landscape, noise, strong_tickets
    from winning_ticket.experiments.chapter import SweepPlan, check_precision

    monkeypatch.setattr(archive, "RESULTS_DIR", tmp_path)
    monkeypatch.setenv("WT_PRECISION", "mixed")
    with pytest.raises(ValueError, match="WT_PRECISION = 'mixed' is not allowed for chapter 'noise': no precision "
                                         "check is recorded"):
        check_precision(noise.noise_task)

    def record(chapter, ok, flips):
        (tmp_path / chapter).mkdir(exist_ok=True)
        (tmp_path / chapter / archive.PRECISION_RECORD).write_text(
            json.dumps({"chapter": chapter, "ok": ok, "precision": "mixed", "rows": 383, "flips": flips}))

    record("noise", True, 0)
    check_precision(noise.noise_task)
    record("landscape", False, 1)
    with pytest.raises(ValueError, match=r"chapter 'landscape': its last precision check did not pass \(1 of 383 "
                                         r"verdicts differ.*allowed here: 'float64'"):
        check_precision(landscape.landscape_task)
    from winning_ticket.experiments import sweep

    calls = []
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="not allowed for chapter 'landscape'"):
        SweepPlan("refused", landscape.landscape_task, ({"x": 1},), 1, 0).run(progress=False)
    assert calls == []
    SweepPlan("allowed", noise.noise_task, ({"x": 1},), 1, 0).run(progress=False)
    assert len(calls) == 1
    check_precision(strong_tickets.theory_task)  # its runs do not use the engine
    check_precision(lambda params, seeds, trials: [])  # not a chapter's task
    monkeypatch.setenv("WT_PRECISION", "float64")
    check_precision(landscape.landscape_task)
