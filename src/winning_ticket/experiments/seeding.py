"""Every random number of the book comes from an explicit seed and a key.

A stream is named by ``(seed, *key)``: ``seed_sequence(2021, r, trial, 0)`` is always
the same stream, however many other streams were made before it, so a trial's numbers
depend only on its own key, never on the batch size, the order of execution or the
number of workers.  Three helpers, used everywhere in the package:

* :func:`seed_sequence` -- the :class:`numpy.random.SeedSequence` of ``(seed, *key)``;
* :func:`numpy_rng` -- a :class:`numpy.random.Generator` on that stream;
* :func:`torch_generator` -- a CPU :class:`torch.Generator` seeded from that stream.

``seed`` may itself be a ``SeedSequence`` (the seed of a sweep trial): the key is then
appended to its spawn key.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int

SeedLike = int | np.random.SeedSequence


def seed_sequence(seed: SeedLike, *key: int) -> np.random.SeedSequence:
    """The seed sequence of the stream named ``key`` below ``seed``."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + tuple(int(k) for k in key))
    check_int("seed", seed, 0)
    return np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))


def numpy_rng(seed: SeedLike, *key: int) -> np.random.Generator:
    """A numpy generator on the stream ``(seed, *key)``; ``numpy_rng(ss)`` uses ``ss`` itself."""
    return np.random.default_rng(seed_sequence(seed, *key))


def torch_seed(seed: SeedLike, *key: int, bits: int = 62) -> int:
    """An integer below ``2**bits`` drawn from the stream ``(seed, *key)``, to seed torch with."""
    check_int("bits", bits, 1, 63)
    return int(numpy_rng(seed, *key).integers(2**bits))


def torch_generator(seed: SeedLike, *key: int, bits: int = 62):
    """A CPU ``torch.Generator`` seeded with :func:`torch_seed` of ``(seed, *key)``.

    Pass it explicitly (``torch.randperm(n, generator=g)``); the package never seeds
    torch's global generator.
    """
    import torch

    return torch.Generator().manual_seed(torch_seed(seed, *key, bits=bits))
