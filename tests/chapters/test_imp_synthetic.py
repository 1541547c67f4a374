"""The IMP-on-synthetic-data chapter on its smoke profile: controls, rules on tables where the claims fail."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from winning_ticket.algorithms.pruning import remaining_counts
from winning_ticket.algorithms.teacher_student import make_problem
from winning_ticket.chapters import imp_synthetic as imp
from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from winning_ticket.experiments.seeding import seed_sequence


@pytest.fixture(scope="module")
def imp_result():
    return imp.run(imp.IMPConfig.for_profile("smoke"), progress=False)


def test_imp_rounds_have_the_exact_remaining_fractions(imp_result):
    c = imp_result.config
    s = imp.imp_summary(imp_result)
    for N in c.N_values:
        assert np.allclose(s.loc[N, "remaining"].to_numpy(), imp.expected_remaining(c))
    assert (imp_result.imp.groupby(["N", "round"]).size() == c.trials).all()
    ctl = imp_result.controls
    assert (ctl.groupby(["N", "round", "control"]).size() == c.trials).all()
    # the controls have exactly IMP's number of weights at every round
    both = ctl.merge(imp_result.imp, on=["N", "trial", "round"], suffixes=("_c", "_i"))
    assert np.allclose(both["remaining_c"], both["remaining_i"])


def test_control_masks_are_nested_and_the_oracle_holds_the_teacher():
    d, K = 20, 3
    p = make_problem(50, d, K, 4, 0.0, seed_sequence(1))
    counts = remaining_counts(d * K, 0.2, 8)
    rand, oracle = imp.control_masks(p.omega, d, counts, seed_sequence(2))
    assert [int(m.sum()) for m in rand] == counts == [int(m.sum()) for m in oracle]
    assert all(np.all(rand[k + 1] <= rand[k]) and np.all(oracle[k + 1] <= oracle[k]) for k in range(len(counts) - 1))
    teacher = p.omega.size
    for m, n in zip(oracle, counts):
        assert imp._matched_overlap(m, p.omega) == min(n, teacher)  # all of the teacher while it fits
    assert not np.array_equal(rand[3], oracle[3])


def test_imp_claims_are_computed_from_the_data(imp_result):
    claims = imp.check_claims(imp_result)
    assert [c.name for c in claims] == ["ticket-beats-dense", "ticket-beats-random-mask", "ticket-matches-oracle",
                                        "error-rises-below-teacher-size", "small-N-stays-high",
                                        "magnitude-pruning-finds-proper-student"]
    assert all(c.verdict == INCONCLUSIVE for c in claims)  # 3 problems per N: too few for every rule
    imp.plot_figure6(imp_result)
    imp.plot_support(imp_result)


def _synthetic(ticket_vs_dense: float, ticket_vs_random: float, ticket_vs_oracle: float, problems: int = 8,
               recovered: int = 40, support_trials: int = 40):
    """A result table with chosen log error ratios (plus noise) at the teacher-size round."""
    c = imp.IMPConfig(d=10, K=2, r_star=2, N_values=(50, 500), trials=problems, rounds=8, rate=0.2,
                      support_N_values=(500,), support_trials=support_trials, long_N_values=(), long_trials=1)
    k20 = imp._round_at_teacher(c)
    rem = imp.expected_remaining(c)
    rng = np.random.default_rng(0)
    imp_rows, ctl_rows = [], []
    for N in c.N_values:
        for t in range(problems):
            dense = 0.3 if N == 50 else 1e-2
            ticket = dense * np.exp(ticket_vs_dense + 0.1 * rng.standard_normal())
            for k in range(c.rounds + 1):
                err = dense if k == 0 else (ticket if k <= k20 else ticket * 10 ** (k - k20))
                imp_rows.append(dict(N=N, trial=t, round=k, remaining=rem[k], test_error=err, teacher_kept=1.0,
                                     status="converged", iterations=10))
                if k:
                    for control, lr in (("random", ticket_vs_random), ("oracle", ticket_vs_oracle)):
                        ctl_rows.append(dict(N=N, trial=t, round=k, control=control, remaining=rem[k],
                                             test_error=err * np.exp(-lr + 0.1 * rng.standard_normal()),
                                             teacher_kept=1.0, status="converged", iterations=10))
    support = pd.DataFrame([dict(N=500, trial=t, recovered=t < recovered) for t in range(support_trials)])
    return imp.IMPSyntheticResult(config=c, imp=pd.DataFrame(imp_rows), controls=pd.DataFrame(ctl_rows),
                                  support=support, imp_long=pd.DataFrame())


def _verdicts(res):
    return {c.name: c.verdict for c in imp.check_claims(res)}


def test_rules_support_when_the_claims_hold():
    v = _verdicts(_synthetic(ticket_vs_dense=-1.0, ticket_vs_random=-2.0, ticket_vs_oracle=0.0))
    assert v == {"ticket-beats-dense": SUPPORTED, "ticket-beats-random-mask": SUPPORTED,
                 "ticket-matches-oracle": SUPPORTED, "error-rises-below-teacher-size": SUPPORTED,
                 "small-N-stays-high": SUPPORTED, "magnitude-pruning-finds-proper-student": SUPPORTED}


def test_rules_refute_when_the_claims_are_false():
    v = _verdicts(_synthetic(ticket_vs_dense=+1.0, ticket_vs_random=+1.0, ticket_vs_oracle=3.0, recovered=20))
    assert v["ticket-beats-dense"] == NOT_SUPPORTED
    assert v["ticket-beats-random-mask"] == NOT_SUPPORTED
    assert v["ticket-matches-oracle"] == NOT_SUPPORTED
    assert v["magnitude-pruning-finds-proper-student"] == NOT_SUPPORTED


def test_rules_abstain_with_too_few_problems():
    v = _verdicts(_synthetic(ticket_vs_dense=-1.0, ticket_vs_random=-2.0, ticket_vs_oracle=0.0, problems=3,
                             recovered=4, support_trials=4))
    assert set(v.values()) == {INCONCLUSIVE}


def test_imp_matched_overlap_ignores_neuron_order():
    omega = np.array([[0, 1], [2, 3]])
    mask = np.zeros((4, 2))
    mask[[2, 3], 0] = 1  # student neuron 0 holds teacher neuron 1
    mask[[0, 1], 1] = 1
    assert imp._matched_overlap(mask, omega) == 4


def test_cap_check_reruns_the_same_problems_with_a_longer_cap(imp_result):
    c = imp_result.config
    long = imp_result.imp_long
    assert set(long["N"]) == set(c.long_N_values) and long["trial"].nunique() == c.long_trials
    assert long["iterations"].max() <= c.long_max_iter and (long["iterations"] >= 0).all()
    ce = imp.cap_effect(imp_result)
    assert len(ce) == len(c.long_N_values) * (c.rounds + 1)
    # same problems and start: a training that stopped before the shorter cap is the same training
    both = long.merge(imp_result.imp, on=["N", "trial", "round"], suffixes=("_long", ""))
    early = both[(both["status"] == "converged") & (both["round"] == 0)]
    assert np.array_equal(early["test_error"], early["test_error_long"])
