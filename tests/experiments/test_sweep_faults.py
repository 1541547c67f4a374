"""Long sweeps survive faults: kills, failing executors, Ctrl-C, damaged caches, edited code."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pytest

from winning_ticket.experiments import sweep as sw
from winning_ticket.experiments.seeding import numpy_rng


def draw_task(params, seeds, trials):
    """A cheap task: one random number per trial from the trial's own stream."""
    return [dict(x=params["x"], trial=t, value=float(numpy_rng(ss).random())) for ss, t in zip(seeds, trials)]


TASKS = [dict(x=i) for i in range(6)]


def test_units_are_written_as_they_finish_inline(tmp_path):
    calls = []

    def counting(params, seeds, trials):
        calls.append(params["x"])
        if params["x"] == 3:
            files = list(tmp_path.rglob("*.json"))
            assert len(files) == 3, "units 0-2 are on disk before unit 3 runs"
        return draw_task(params, seeds, trials)

    sw.run_sweep(counting, TASKS, 1, seed=1, name="inline", cache_dir=tmp_path, progress=False)
    assert calls == list(range(6))


class FailingExecutor(Executor):
    """Accepts two units, then refuses work."""

    def __init__(self):
        self.n = 0
        self.inner = sw.InlineExecutor()

    def submit(self, fn, /, *args, **kwargs):
        self.n += 1
        if self.n == 3:
            raise RuntimeError("executor is gone")
        return self.inner.submit(fn, *args, **kwargs)


def test_an_executor_that_fails_keeps_the_finished_units(tmp_path):
    with pytest.raises(RuntimeError, match="executor is gone"):
        sw.run_sweep(draw_task, TASKS, 1, seed=1, name="failing", executor=FailingExecutor(), cache_dir=tmp_path,
                     progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 2
    again = sw.run_sweep(draw_task, TASKS, 1, seed=1, name="failing", cache_dir=tmp_path, progress=False)
    assert (again.cached, again.computed) == (2, 4)


def test_ctrl_c_stops_at_once_and_keeps_what_finished(tmp_path):
    def interrupted(params, seeds, trials):
        if params["x"] == 2:
            raise KeyboardInterrupt
        return draw_task(params, seeds, trials)

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(interrupted, TASKS, 1, seed=1, name="ctrlc", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 2  # nothing after the interrupt ran


SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from experiments.test_sweep_faults import TASKS, draw_task
    from winning_ticket.experiments import sweep as sw

    def slow(params, seeds, trials):
        if params["x"] == 4 and os.environ.get("KILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        return draw_task(params, seeds, trials)

    slow.__module__ = "experiments.test_sweep_faults"
    res = sw.run_sweep(slow, TASKS, 2, seed=5, name="killed", cache_dir={cache!r}, progress=False)
    print(res.runs["value"].tolist(), res.cached, res.computed)
""")


def test_a_sigkilled_sweep_resumes_with_identical_results(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parents[1]), cache=str(tmp_path / "cache")))
    killed = subprocess.run([sys.executable, str(script)], env={**os.environ, "KILL": "1"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4  # units 0-3 survived the kill
    resumed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    values, cached, computed = resumed.stdout.rsplit(" ", 2)
    assert (int(cached), int(computed)) == (4, 2)
    fresh = sw.run_sweep(draw_task, TASKS, 2, seed=5, name="fresh", progress=False)
    assert json.loads(values) == fresh.runs["value"].tolist()


def test_damaged_cache_files_are_recomputed_with_a_warning(tmp_path):
    first = sw.run_sweep(draw_task, TASKS, 2, seed=1, name="damaged", cache_dir=tmp_path, progress=False)
    files = sorted(tmp_path.rglob("*.json"))
    files[0].write_text('{"trunc')                         # truncated JSON
    files[1].write_text("[]")                               # empty
    rows = json.loads(files[2].read_text())
    files[3].write_text(json.dumps(rows))                   # another unit's rows
    files[4].write_text(json.dumps(rows[:1]))               # a trial dropped
    with pytest.warns(RuntimeWarning) as record:
        again = sw.run_sweep(draw_task, TASKS, 2, seed=1, name="damaged", cache_dir=tmp_path, progress=False)
    record = [w for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(record) == 4 and all(str(files[0].parent) in str(w.message) for w in record)
    assert (again.cached, again.computed) == (2, 4)
    np.testing.assert_array_equal(again.runs["value"], first.runs["value"])


def test_the_cache_key_covers_the_algorithm_code(tmp_path, monkeypatch):
    a = sw.run_sweep(draw_task, TASKS[:2], 1, seed=1, name="code", cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(sw, "package_digest", lambda *modules: "edited-agd-py")  # e.g. SUCCESS_TOL changed in agd.py
    b = sw.run_sweep(draw_task, TASKS[:2], 1, seed=1, name="code", cache_dir=tmp_path, progress=False)
    assert a.cache_path != b.cache_path and b.computed == 2


def test_a_task_without_readable_source_is_not_cached(tmp_path):
    namespace = {}
    exec("def task(params, seeds, trials):\n    return [dict(trial=t) for t in trials]\n", namespace)
    with pytest.raises(ValueError, match="cannot read the source"):
        sw.run_sweep(namespace["task"], TASKS[:1], 1, seed=1, name="nosource", cache_dir=tmp_path, progress=False)
    assert sw.run_sweep(namespace["task"], TASKS[:1], 1, seed=1, name="nosource", progress=False).computed == 1


@pytest.mark.parametrize("name", ["../../x", "/abs", ".hidden", "a/b", ""])
def test_sweep_names_cannot_leave_the_cache_directory(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        sw.run_sweep(draw_task, TASKS[:1], 1, seed=1, name=name, cache_dir=tmp_path, progress=False)


def test_unknown_and_unserializable_parameters_are_named():
    with pytest.raises(ValueError, match=r"KeyError\(.x.\).*missing sweep parameter"):
        sw.run_sweep(draw_task, [dict(y=1)], 1, seed=1, name="unknown", progress=False)
    with pytest.raises(ValueError, match="sweep parameter 'x'"):
        sw.run_sweep(draw_task, [dict(x=object())], 1, seed=1, name="json", progress=False)
    with pytest.raises(ValueError, match="seed_keys"):
        sw.run_sweep(draw_task, [dict(x=1)], 1, seed=1, name="keys", seed_keys=("r",), progress=False)


def sleepy_or_failing(params, seeds, trials):
    """Unit x=0 fails at once; the others take a moment and succeed."""
    import time

    if params["x"] == 0:
        raise RuntimeError("unit 0 failed")
    time.sleep(1.0)
    return draw_task(params, seeds, trials)


def test_units_running_elsewhere_when_one_fails_are_kept(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool, pytest.raises(RuntimeError, match="unit 0 failed"):
        sw.run_sweep(sleepy_or_failing, TASKS[:2], 1, seed=1, name="elsewhere", executor=pool, cache_dir=tmp_path,
                     progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 1  # unit 1 was running in the other process: kept


def test_repeated_tasks_and_bad_unit_sizes_are_refused():
    with pytest.raises(ValueError, match="appears more than once"):
        sw.run_sweep(draw_task, [dict(x=1), dict(x=1)], 1, seed=1, name="dup", progress=False)
    with pytest.raises(ValueError, match="trials_per_unit"):
        sw.run_sweep(draw_task, [dict(x=1)], 2, seed=1, name="zero", trials_per_unit=0, progress=False)
    with pytest.raises(ValueError, match="name"):
        sw.run_sweep(draw_task, [dict(x=1)], 1, seed=1, name="ok\n", progress=False)
