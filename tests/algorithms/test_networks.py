"""Torch networks, training and the weight cache."""

import matplotlib

matplotlib.use("Agg")
import torch



def test_model_cache_roundtrip(tmp_path):
    from winning_ticket.algorithms.networks import BiasFreeMLP, load_state, save_state_atomic

    m = BiasFreeMLP((5, 4, 3))
    path = tmp_path / "sub" / "m.pt"
    assert load_state(path) is None
    save_state_atomic(path, m.state_dict(), {"seconds": 1.5})
    state, meta = load_state(path)
    assert meta == {"seconds": 1.5} and all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_bias_free_mlp_from_a_generator_equals_the_global_seed_init():
    import numpy as np
    import torch

    from winning_ticket.algorithms.networks import BiasFreeMLP
    from winning_ticket.experiments.seeding import torch_generator, torch_seed

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(torch_seed(2021, 8, bits=31))
        legacy = BiasFreeMLP((20, 7, 3))
    finally:
        torch.random.set_rng_state(state)
    seeded = BiasFreeMLP((20, 7, 3), generator=torch_generator(2021, 8, bits=31))
    for a, b in zip(legacy.weight_matrices(), seeded.weight_matrices()):
        np.testing.assert_array_equal(a, b)
