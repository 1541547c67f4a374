"""The Landscape chapter (Fig. 2) on its smoke profile, and its rules."""

import dataclasses

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from winning_ticket.chapters import landscape as ls
from winning_ticket.algorithms.agd import run_agd
from winning_ticket.experiments.seeding import seed_sequence
from winning_ticket.algorithms.teacher_student import make_problem, starts_along
from winning_ticket.experiments.sweep import task_key


@pytest.fixture(scope="module")
def land():
    return ls.run(ls.LandscapeConfig.for_profile("smoke"), progress=False)



def test_landscape_task_equals_reference_runs():
    """One cell of the map, recomputed with the plain numpy reference, full protocol, no early stop."""
    c = ls.LandscapeConfig.for_profile("smoke")
    params = dict(N=c.N, d=c.d, K=c.K, r=20, lams=(0.5, 2.0), etas=(0.5, 5.0), beta=c.beta, max_iter=c.max_iter,
                  early_success=True)
    ss = seed_sequence(c.seed, task_key(params), 0)
    rows = ls.landscape_task(params, [ss], [0])
    p = make_problem(c.N, c.d, c.K, 20, 0.0, seed_sequence(ss, 0))
    starts = starts_along(p.w_star, [0.5, 2.0], seed_sequence(ss, 1))
    for row in rows:
        ref = run_agd(p.sub_inputs(), p.y, p.w_star, starts[[0.5, 2.0].index(row["lam"])], row["eta"], c.beta,
                      max_iter=c.max_iter)
        assert row["success"] == ref.success



def test_landscape_tables_and_claims(land):
    m = ls.success_map(land)
    assert set(m.index.names) == {"eta", "r", "lam"} and ((m["rate_low"] <= m["rate"]) & (m["rate"] <= m["rate_high"])).all()
    b = ls.boundary(land)
    assert (b["boundary"] >= 0).all()
    probe = land.probe
    assert (probe["hessian_min_eig"] > 0).all()  # the a.e. Hessian is a Gauss-Newton matrix
    rad = ls.measured_radius(probe)
    assert set(rad.index) == set(land.config.r_values)
    names = [c.name for c in ls.check_claims(land)]
    assert names == ["boundary-falls-with-sqrt-r", "boundary-falls-with-sqrt-r-large-step",
                     "failures-are-only-the-cap", "convex-region-shrinks-with-sqrt-r"]
    assert ls.plot_figure2(land).axes[0].get_xlabel() == r"$\sqrt{r}$"



def test_landscape_boundary_rule():
    c = ls.LandscapeConfig(N=10, d=10, K=1, r_values=(1, 4), lams=(0.5, 1.0, 2.0), trials=1, etas=(0.5,))
    rows = []
    for r, ok in ((1, [True, True, False]), (4, [True, False, True])):
        rows += [dict(r=r, lam=lam, eta=0.5, trial=0, success=s, status="max_iter", final_error=1.0)
                 for lam, s in zip(c.lams, ok)]
    res = ls.LandscapeResult(config=c, runs=pd.DataFrame(rows), probe=pd.DataFrame(), seconds=0)
    b = ls.boundary(res).loc[0.5]["boundary"]
    assert b.loc[1] == 1.0 and b.loc[4] == 0.5  # a success beyond the first failure does not count



def test_nonconvexity_detector():
    t = np.linspace(-1, 1, 101)
    assert ls.nonconvex_fraction(np.stack([t**2, np.abs(t), np.exp(t)])) == 0.0
    kinked = np.maximum(t, 0) - 0.5 * np.maximum(t - 0.3, 0)  # convex, then a concave kink
    assert ls.nonconvex_fraction(np.stack([t**2, kinked, -(t**2), 1 + 1e-14 * np.sin(40 * t)])) == 0.5



def test_convexity_probe_on_a_small_problem():
    c = ls.LandscapeConfig.for_profile("smoke")
    probe = ls.convexity_probe(dataclasses.replace(c, probe_rhos=(0.5, 4.0)), r=5, seed=0, device="cpu")
    assert list(probe["rho"]) == [0.5, 4.0]
    assert (probe["hessian_min_eig"] > 0).all() and (probe["hessian_max_eig"] >= probe["hessian_min_eig"]).all()
    assert probe["nonconvex_chords"].between(0, 1).all()
