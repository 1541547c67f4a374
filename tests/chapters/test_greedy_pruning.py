"""The Greedy-pruning chapter (Rajaraman et al.)."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from winning_ticket.algorithms import matrix_sensing as ms


def test_pipeline_keeps_r_and_beats_the_unpruned_model():
    p = ms.make_sensing_problem(400, ms.ground_truth(10, 2, 1), 0.1, 2)
    res = ms.greedy_pruning(p, 10, 0.05, 1e-6, eta=0.01, train_steps=4000, fine_tune_steps=1500, seed=3)
    assert res.kept == 2 and res.status == "done"
    assert res.error_after_fine_tune < res.error_after_prune
    assert res.error_after_fine_tune < 3 * 0.1 * np.sqrt(2 * 10 / 400)



def test_linear_phase_fit():
    from winning_ticket.chapters.greedy_pruning import linear_phase_r2

    rate, r2 = linear_phase_r2(list(0.5 ** np.arange(60)))
    assert rate == pytest.approx(0.5) and r2 == pytest.approx(1.0)
    assert np.isnan(linear_phase_r2([1.0, 0.5, 0.4])[1])


def test_a_run_that_prunes_every_column_is_inconclusive_not_a_crash():
    import numpy as np

    from winning_ticket.algorithms import matrix_sensing as ms
    from winning_ticket.chapters import greedy_pruning as gp

    U = ms.ground_truth(10, 2, 1)
    p = ms.make_sensing_problem(100, U, 0.1, 2, "gaussian")
    res = ms.greedy_pruning(p, 5, 0.05, 1e-6, eta=0.01, train_steps=20, fine_tune_steps=10, seed=3, tau=1e6)
    assert res.kept == 0 and res.status == "nothing_kept" and not res.U.any()
    assert res.error_after_fine_tune == np.linalg.norm(p.M_star)
    result = _tiny_result()
    result.runs.loc[0, "kept"] = 0  # as a too-large lambda leaves it
    verdicts = {cl.name: cl.verdict for cl in gp.check_claims(result)}
    assert verdicts["prune-keeps-exactly-r"] != "SUPPORTED"
    assert verdicts["error-level-sigma-sqrt-rd-over-n"] == verdicts["fine-tuning-converges-linearly"] == "INCONCLUSIVE"
    assert "pruned every column" in {cl.name: cl for cl in gp.check_claims(result)}["pruning-matches-knowing-r"].statistic


_TINY = None


def _tiny_result():
    """A real (small) run of the chapter, computed once, copied for each test."""
    import copy

    from winning_ticket.chapters import greedy_pruning as gp

    global _TINY
    if _TINY is None:
        c = gp.GreedyConfig(fig_d=20, fig_steps=50, n_values=(100, 200, 400), trials=1, train_steps=20,
                            fine_tune_steps=10, quad_n=200, quad_test=200, lam_values=(0.05, 2.0), lam_n=100,
                            lam_trials=1)
        _TINY = gp.run(c, progress=False)
    return copy.deepcopy(_TINY)


def _table(n_values=(100, 400, 1600), trials=8, *, level=1.0, base=1.6, early=1.3, exact=1.0, train_gap=0.002,
           spread=0.05, seed=0):
    """A synthetic runs table: errors at `level` times the reference, controls at given multiples."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for n in n_values:
        ref = 0.1 * np.sqrt(2 * 20 / n)
        for t in range(trials):
            e = ref * level * np.exp(rng.normal(0, spread))
            rows.append(dict(n=n, trial=t, kept=2, status="done", reference=ref, error=e,
                             baseline_error=e * base * np.exp(rng.normal(0, spread)),
                             early_stopped_error=e * early * np.exp(rng.normal(0, spread)),
                             exact_r_error=e / exact * np.exp(rng.normal(0, spread / 5)),
                             train_loss=0.01, baseline_train_loss=0.01 - train_gap * (1 + rng.normal(0, 0.1)),
                             history_grad=list(0.9 ** np.arange(400.0)), error_after_prune=e))
    return pd.DataFrame(rows)


def _with(result, runs=None, quad=None, lambdas=None):
    import dataclasses

    return dataclasses.replace(result, runs=result.runs if runs is None else runs,
                               quad=result.quad if quad is None else quad,
                               lambdas=result.lambdas if lambdas is None else lambdas)


def _verdicts(result):
    from winning_ticket.chapters import greedy_pruning as gp

    return {cl.name: cl.verdict for cl in gp.check_claims(result)}


def test_the_level_rule_passes_fails_and_abstains():
    base = _tiny_result()
    assert _verdicts(_with(base, runs=_table(level=1.0)))["error-level-sigma-sqrt-rd-over-n"] == "SUPPORTED"
    assert _verdicts(_with(base, runs=_table(level=3.0)))["error-level-sigma-sqrt-rd-over-n"] == "NOT SUPPORTED"
    assert _verdicts(_with(base, runs=_table(level=1.0, trials=3)))["error-level-sigma-sqrt-rd-over-n"] == "INCONCLUSIVE"
    # one n far off the level is enough to fail "at every n"
    t = _table(level=1.0)
    t.loc[t["n"] == 1600, "error"] *= 4
    assert _verdicts(_with(base, runs=t))["error-level-sigma-sqrt-rd-over-n"] == "NOT SUPPORTED"


def test_the_control_rules_can_fail():
    base = _tiny_result()
    good = _verdicts(_with(base, runs=_table()))
    assert good["pruning-beats-unpruned"] == good["pruning-beats-early-stopped-unpruned"] == "SUPPORTED"
    assert good["pruning-matches-knowing-r"] == good["unpruned-fits-the-training-data-better"] == "SUPPORTED"
    bad = _verdicts(_with(base, runs=_table(base=0.6, early=0.7, exact=2.0, train_gap=-0.002)))
    assert bad["pruning-beats-unpruned"] == bad["pruning-beats-early-stopped-unpruned"] == "NOT SUPPORTED"
    assert bad["pruning-matches-knowing-r"] == bad["unpruned-fits-the-training-data-better"] == "NOT SUPPORTED"
    tie = _verdicts(_with(base, runs=_table(early=1.0, spread=0.2)))
    assert tie["pruning-beats-early-stopped-unpruned"] == "INCONCLUSIVE"
    few = _verdicts(_with(base, runs=_table(trials=3)))
    assert few["pruning-beats-unpruned"] == few["pruning-matches-knowing-r"] == "INCONCLUSIVE"


def test_the_lambda_range_rule():
    import pandas as pd

    base = _tiny_result()

    def sweep(kept_by_lam, trials=6):
        return pd.DataFrame([dict(lam=lam, n=800, trial=t, kept=k, status="done", error_after_prune=0.1)
                             for lam, k in kept_by_lam.items() for t in range(trials)])

    wide = {0.002: 9, 0.005: 2, 0.01: 2, 0.02: 2, 0.05: 2, 0.1: 2, 1.0: 0}
    assert _verdicts(_with(base, lambdas=sweep(wide)))["exactly-r-over-a-range-of-lambda"] == "SUPPORTED"
    narrow = {0.002: 9, 0.005: 5, 0.01: 3, 0.02: 2, 0.05: 2, 0.1: 1, 1.0: 0}
    assert _verdicts(_with(base, lambdas=sweep(narrow)))["exactly-r-over-a-range-of-lambda"] == "NOT SUPPORTED"
    assert _verdicts(_with(base, lambdas=sweep(wide, trials=2)))["exactly-r-over-a-range-of-lambda"] == "INCONCLUSIVE"
