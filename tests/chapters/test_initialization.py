"""The Initialization chapter (Lemma 1): the smoke run, and every claim's rule on tables where it must fail."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from winning_ticket.chapters import initialization as init
from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED


@pytest.fixture(scope="module")
def smoke():
    return init.run(init.InitConfig.for_profile("smoke"), progress=False)


def test_initialization_chapter_smoke(smoke):
    s = init.n_summary(smoke)
    assert list(s.index) == list(smoke.config.N_values)
    assert (s["subspace_error_median"] < 1).all()
    assert set(smoke.grid["variant"]) == {"paper", "robust-sum", "union", "sum-uncorrected"}
    # the default never returns a start worse than W = 0 (its held-out risk is capped by calibration)
    union = smoke.grid[smoke.grid["variant"] == "union"]
    assert (union["init_error"] < 1).all()
    claims = init.check_claims(smoke)
    assert [c.name for c in claims] == ["error-falls-with-N", "error-rate-root-N", "error-grows-with-r",
                                        "lands-in-convergence-region", "beats-random-start",
                                        "overlap-correction-helps", "union-beats-sum"]
    init.plot_initialization(smoke)


def _verdicts(result):
    return {c.name: c.verdict for c in init.check_claims(result)}


def _synthetic(config, *, n_slope=-0.5, r_slope=0.5, tensor=1.0, random=0.2, correction=0.5, union_gain=1.0,
               trials=20, agd_trials=40, seed=0):
    """A result table built from chosen effects plus noise: what the rules see, nothing computed."""
    rng = np.random.default_rng(seed)
    c = config.replace(trials=trials, agd_trials=agd_trials)
    by_n = pd.DataFrame([dict(N=N, trial=t, init_error=0.1 * (N / 1e4) ** n_slope * np.exp(0.1 * rng.standard_normal()),
                              subspace_error=0.1, direction_error=0.1, size_error=0.1, flagged=False)
                         for N in c.N_values for t in range(trials)])
    by_r = pd.DataFrame([dict(r=r, trial=t, init_error=0.05 * r**r_slope * np.exp(0.1 * rng.standard_normal()),
                              subspace_error=0.1) for r in c.r_values for t in range(trials)])
    grid = []
    for K, r, sp in init.GRID:
        for t in range(trials):
            base = 0.1 * np.exp(0.2 * rng.standard_normal())
            errors = {"union": base, "robust-sum": base * np.exp(union_gain + 0.2 * rng.standard_normal()), "paper": 2.0}
            if sp == "overlapping":
                errors["sum-uncorrected"] = errors["robust-sum"] * np.exp(correction + 0.2 * rng.standard_normal())
            grid += [dict(K=K, r=r, supports=sp, trial=t, variant=v, init_error=e, flagged=False) for v, e in errors.items()]
    agd = pd.DataFrame([dict(trial=t, success_tensor=rng.random() < tensor, success_random=rng.random() < random,
                             **{"success_lambda=0.5": True}, iterations_tensor=1, iterations_random=1,
                             **{"iterations_lambda=0.5": 1}) for t in range(agd_trials)])
    return init.InitResult(config=c, by_n=by_n, by_r=by_r, grid=pd.DataFrame(grid), agd=agd, seconds=0.0)


CONFIG = init.InitConfig.for_profile("evidence")


def test_rules_support_what_the_synthetic_effects_say():
    v = _verdicts(_synthetic(CONFIG))
    assert set(v.values()) == {SUPPORTED}, v


@pytest.mark.parametrize("effects, claim", [
    (dict(n_slope=0.2), "error-falls-with-N"),
    (dict(n_slope=-0.9), "error-rate-root-N"),
    (dict(n_slope=-0.1), "error-rate-root-N"),
    (dict(r_slope=-0.5), "error-grows-with-r"),
    (dict(tensor=0.3), "lands-in-convergence-region"),
    (dict(tensor=0.2, random=0.9), "beats-random-start"),
    (dict(correction=-0.5), "overlap-correction-helps"),
    (dict(union_gain=-1.0), "union-beats-sum"),
])
def test_each_rule_fails_when_its_claim_is_false(effects, claim):
    assert _verdicts(_synthetic(CONFIG, **effects))[claim] == NOT_SUPPORTED


def test_rules_are_inconclusive_with_too_little_data_or_no_effect():
    v = _verdicts(_synthetic(CONFIG, trials=1, agd_trials=4))
    for name in ("lands-in-convergence-region", "beats-random-start", "overlap-correction-helps"):
        assert v[name] == INCONCLUSIVE, (name, v)
    # two N values, one problem each: a slope with no interval
    few = _synthetic(CONFIG.replace(N_values=(10_000, 20_000), r_values=(5, 10)), trials=1)
    v = _verdicts(few)
    assert v["error-falls-with-N"] == INCONCLUSIVE and v["error-grows-with-r"] == INCONCLUSIVE


def test_paired_rules_rarely_support_a_null_effect():
    """No effect at all: a 95% rule may say SUPPORTED by chance about 2.5% of the time, not more
    (20 synthetic evidence runs; 4 or more false SUPPORTED verdicts has probability 0.001)."""
    false = 0
    for seed in range(20):
        v = _verdicts(_synthetic(CONFIG, tensor=0.5, random=0.5, correction=0.0, union_gain=0.0, seed=seed))
        false += sum(v[n] == SUPPORTED for n in ("overlap-correction-helps", "union-beats-sum", "beats-random-start"))
    assert false <= 3
