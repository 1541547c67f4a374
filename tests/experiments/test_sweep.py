import json
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from winning_ticket.experiments.stats import bootstrap_slope, wilson_interval
from winning_ticket.algorithms import engine
from winning_ticket.experiments.sweep import InlineExecutor, engine_settings, run_sweep, success_summary, task_key

STATE = {"calls": 0, "fail_on": None}


def toy_task(params, seeds, trials):
    """A cheap task: a few random numbers per trial, drawn from the trial's own seed."""
    rows = []
    for ss, t in zip(seeds, trials):
        x = np.random.default_rng(ss).standard_normal(3)
        rows.append(dict(a=params["a"], trial=t, x=float(x[0]), success=bool(x[1] > 0)))
    return rows


def flaky_task(params, seeds, trials):
    """toy_task that counts its calls and fails on the task named by STATE['fail_on']."""
    STATE["calls"] += 1
    if params["a"] == STATE["fail_on"]:
        raise RuntimeError("interrupted")
    return toy_task(params, seeds, trials)


TASKS = [dict(a=1), dict(a=2), dict(a=3)]


def test_task_key_is_stable_and_order_free():
    assert task_key({"r": 5, "lam": 0.5}) == task_key({"lam": 0.5, "r": 5})
    assert task_key({"r": 5}) != task_key({"r": 6})
    assert task_key({"r": np.int64(5), "x": (1, 2)}) == task_key({"r": 5, "x": [1, 2]})


def assert_same_rows(a, b):
    """Equal results; ``unit_seconds`` measures time and is left out."""
    pd.testing.assert_frame_equal(a.drop(columns="unit_seconds"), b.drop(columns="unit_seconds"))


def test_rows_ordered_and_seeded_by_task_and_trial():
    res = run_sweep(toy_task, TASKS, 4, seed=3, name="toy", progress=False)
    assert list(res.runs["a"]) == [1] * 4 + [2] * 4 + [3] * 4
    assert list(res.runs["trial"]) == [0, 1, 2, 3] * 3
    assert (res.runs["seed"] == 3).all() and res.runs["task_key"].nunique() == 3
    # the same trial of the same task gets the same numbers in any other grid
    other = run_sweep(toy_task, [dict(a=3), dict(a=9)], 2, seed=3, name="toy", progress=False)
    mine = res.runs[(res.runs.a == 3) & (res.runs.trial < 2)]["x"].to_numpy()
    np.testing.assert_array_equal(other.runs[other.runs.a == 3]["x"].to_numpy(), mine)


def test_results_do_not_depend_on_units_or_executor():
    ref = run_sweep(toy_task, TASKS, 5, seed=1, name="toy", progress=False).runs
    split = run_sweep(toy_task, TASKS, 5, seed=1, name="toy", trials_per_unit=2, progress=False).runs
    assert_same_rows(ref, split)
    with ProcessPoolExecutor(max_workers=2) as pool:
        procs = run_sweep(toy_task, TASKS, 5, seed=1, name="toy", trials_per_unit=1, executor=pool, progress=False).runs
    assert_same_rows(ref, procs)


def test_resume_after_interruption(tmp_path):
    STATE.update(calls=0, fail_on=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sweep(flaky_task, TASKS, 2, seed=0, name="resume", cache_dir=tmp_path, progress=False)
    (cache,) = tmp_path.iterdir()
    done = sorted(p.name for p in cache.iterdir())
    assert done == ["task0000-trials0-1.json", "task0001-trials0-1.json"]  # finished units, nothing half-written
    assert all(len(json.loads((cache / name).read_text())) == 2 for name in done)
    STATE.update(calls=0, fail_on=None)
    res = run_sweep(flaky_task, TASKS, 2, seed=0, name="resume", cache_dir=tmp_path, progress=False)
    assert STATE["calls"] == 1 and res.cached == 2 and res.computed == 1
    assert_same_rows(res.runs, run_sweep(toy_task, TASKS, 2, seed=0, name="fresh", progress=False).runs)


def test_cache_is_keyed_by_parameters(tmp_path):
    a = run_sweep(toy_task, TASKS, 2, seed=0, name="k", cache_dir=tmp_path, progress=False)
    b = run_sweep(toy_task, TASKS, 2, seed=1, name="k", cache_dir=tmp_path, progress=False)
    c = run_sweep(toy_task, TASKS, 2, seed=0, name="k", cache_dir=tmp_path, progress=False)
    assert a.cache_path != b.cache_path and c.cache_path == a.cache_path
    assert c.cached == 3 and c.computed == 0
    assert_same_rows(a.runs, c.runs)


def _default_engine_settings(monkeypatch):
    for var in ("WT_PRECISION", "WT_KERNEL", "WT_CHUNK_BYTES", "WT_DEVICE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("name, default, other", [
    ("WT_PRECISION", "float64", "mixed"),
    ("WT_KERNEL", "auto", "torch"),
    ("WT_KERNEL", "auto", "fused"),
    ("WT_CHUNK_BYTES", str(engine.CHUNK_BYTES_CPU), str(16 << 20)),
])
def test_cache_is_keyed_by_the_engine_settings(tmp_path, monkeypatch, name, default, other):
    """Units computed under another engine setting (mixed precision, an explicit kernel, another
    chunk) are other numbers, and an archive's audit re-executes under the setting it records: they
    go to their own cache, so a run under the defaults never reads them back (and the defaults'
    key, written out or not, is the one the cache had before the settings were keyed)."""
    _default_engine_settings(monkeypatch)
    a = run_sweep(toy_task, TASKS, 2, seed=0, name="p", cache_dir=tmp_path, progress=False)
    assert engine_settings() == {}
    monkeypatch.setenv(name, default)
    same = run_sweep(toy_task, TASKS, 2, seed=0, name="p", cache_dir=tmp_path, progress=False)
    assert same.cache_path == a.cache_path and same.cached == 3
    monkeypatch.setenv(name, other)
    m = run_sweep(toy_task, TASKS, 2, seed=0, name="p", cache_dir=tmp_path, progress=False)
    assert m.cache_path != a.cache_path and m.computed == 3 and m.cached == 0
    assert list(engine_settings().values()) == [other]


def test_cache_is_keyed_by_a_gpu_device(tmp_path, monkeypatch):
    """A run on a GPU (the torch kernel there agrees with the CPU's only to rounding) has its own cache."""
    _default_engine_settings(monkeypatch)
    cpu = run_sweep(toy_task, TASKS, 2, seed=0, name="g", cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(engine, "default_device", lambda: torch.device("cuda"))
    assert engine_settings() == {"engine_device": "cuda"}
    gpu = run_sweep(toy_task, TASKS, 2, seed=0, name="g", cache_dir=tmp_path, progress=False)
    assert gpu.cache_path != cpu.cache_path and gpu.computed == 3


def test_dask_cluster_gives_identical_results():
    distributed = pytest.importorskip("distributed")
    ref = run_sweep(toy_task, TASKS, 3, seed=5, name="toy", progress=False).runs
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = run_sweep(toy_task, TASKS, 3, seed=5, name="toy", trials_per_unit=1,
                            executor=client.get_executor(), progress=False).runs
    assert_same_rows(ref, res)


def test_inline_executor_reports_exceptions():
    fut = InlineExecutor().submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fut.result()


def test_bad_sweep_arguments():
    with pytest.raises(ValueError, match="tasks"):
        run_sweep(toy_task, [], 2, seed=0, name="x")
    with pytest.raises(ValueError, match="^trials"):
        run_sweep(toy_task, TASKS, 0, seed=0, name="x")
    with pytest.raises(ValueError, match="^seed"):
        run_sweep(toy_task, TASKS, 1, seed=-2, name="x")


def test_wilson_interval():
    lo, hi = wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert np.isclose(lo[0], 0) and 0.2 < hi[0] < 0.35  # 0/10 is not a certainty of failure
    assert lo[1] < 0.5 < hi[1] and np.isclose(0.5 - lo[1], hi[1] - 0.5)
    assert np.isclose(hi[2], 1) and 0.65 < lo[2] < 0.8
    np.testing.assert_allclose(wilson_interval(50, 100), (0.4038, 0.5962), atol=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_success_summary():
    runs = pd.DataFrame({"c": [1, 1, 2, 2], "success": [True, False, True, True]})
    s = success_summary(runs, by=["c"])
    assert list(s["rate"]) == [0.5, 1.0] and list(s["trials"]) == [2, 2]
    assert (s["rate_low"] <= s["rate"]).all() and (s["rate"] <= s["rate_high"]).all()


def test_bootstrap_slope_covers_the_truth():
    rng = np.random.default_rng(0)
    x = np.repeat(np.arange(5.0), 20)
    y = 2.0 * x + rng.standard_normal(x.size)
    slope, lo, hi = bootstrap_slope(x, y, x, seed=1)
    assert lo < 2.0 < hi and abs(slope - 2.0) < 0.2
    with pytest.raises(ValueError, match="two distinct"):
        bootstrap_slope(np.ones(4), np.ones(4), np.ones(4), seed=0)
