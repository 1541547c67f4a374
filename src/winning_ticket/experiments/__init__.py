"""The experiment machinery: how the book runs, stores and judges experiments.

- :mod:`~.seeding`: every random stream from ``(seed, *key)``.
- :mod:`~.validation`: argument checks with errors that name the parameter.
- :mod:`~.progress`: progress bars, quiet under CI and nbval.
- :mod:`~.sweep`: grids of tasks x trials on any executor, with a resumable cache.
- :mod:`~.stats`: Wilson and bootstrap intervals.
- :mod:`~.claims`: claims and their verdicts.
- :mod:`~.rules`: decision rules (SUPPORTED / NOT SUPPORTED / INCONCLUSIVE from intervals).
- :mod:`~.archive`: the evidence archive (store, load, audit).
- :mod:`~.profiles`: the ``smoke``, ``book`` and ``paper`` profiles.
- :mod:`~.chapter`: the chapter protocol.
- :mod:`~.plotting`: the book's figure style.

Importing this package imports none of its modules (the algorithm layer uses
:mod:`~.seeding`, :mod:`~.validation` and :mod:`~.progress` alone).
"""
