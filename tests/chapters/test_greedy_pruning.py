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
    c = gp.GreedyConfig(fig_d=20, fig_steps=50, n_values=(100, 200, 400), trials=1, train_steps=20,
                        fine_tune_steps=10, quad_n=200, quad_test=200)
    result = gp.run(c, progress=False)
    result.runs.loc[0, "kept"] = 0  # as a too-large lambda leaves it
    verdicts = {cl.name: cl.verdict for cl in gp.check_claims(result)}
    assert verdicts["prune-keeps-exactly-r"] == "NOT SUPPORTED"
    assert verdicts["error-rate-sqrt-rd-over-n"] == verdicts["fine-tuning-converges-linearly"] == "INCONCLUSIVE"
