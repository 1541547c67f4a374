"""The Initialization chapter (Lemma 1)."""

import matplotlib

matplotlib.use("Agg")

from winning_ticket.chapters import initialization as init


def test_initialization_chapter_smoke():
    res = init.run(init.InitConfig.for_profile("smoke"), progress=False)
    s = init.n_summary(res)
    assert list(s.index) == list(res.config.N_values)
    assert (s["subspace_error_median"] < 1).all()
    assert set(res.overlap["corrected"]) == {True, False}
    assert len(init.check_claims(res)) == 4
    init.plot_initialization(res)
