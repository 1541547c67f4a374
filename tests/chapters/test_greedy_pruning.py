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
