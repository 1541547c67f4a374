"""Seeding: every stream from (seed, *key), the same wherever it is made."""

import numpy as np
import pytest
import torch

from winning_ticket.experiments.seeding import numpy_rng, seed_sequence, torch_generator, torch_seed


def test_streams_depend_only_on_their_key():
    a = numpy_rng(7, 3, 1).standard_normal(5)
    numpy_rng(7, 9).standard_normal(100)  # other streams in between change nothing
    np.testing.assert_array_equal(a, numpy_rng(7, 3, 1).standard_normal(5))
    assert not np.array_equal(a, numpy_rng(7, 3, 2).standard_normal(5))
    assert not np.array_equal(a, numpy_rng(8, 3, 1).standard_normal(5))


def test_a_seed_sequence_extends_its_key():
    ss = seed_sequence(7, 3)
    np.testing.assert_array_equal(numpy_rng(ss, 1).random(4), numpy_rng(7, 3, 1).random(4))
    np.testing.assert_array_equal(numpy_rng(ss).random(4), np.random.default_rng(ss).random(4))


def test_torch_generator_is_seeded_from_the_stream():
    g1, g2 = torch_generator(5, 1), torch_generator(5, 1)
    assert torch.equal(torch.randn(6, generator=g1), torch.randn(6, generator=g2))
    assert not torch.equal(torch.randn(6, generator=torch_generator(5, 2)), torch.randn(6, generator=torch_generator(5, 1)))
    assert 0 <= torch_seed(5, 1, bits=31) < 2**31
    state = torch.random.get_rng_state()
    torch_generator(5, 1)
    assert torch.equal(state, torch.random.get_rng_state()), "the global generator is never touched"


def test_bad_seeds_are_named():
    with pytest.raises(ValueError, match="seed"):
        numpy_rng(-1)
    with pytest.raises(ValueError, match="bits"):
        torch_seed(1, bits=64)
