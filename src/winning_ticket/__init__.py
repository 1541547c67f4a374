"""Why Lottery Tickets Win: the engine behind the companion book.

Modules, one concept each:

- :mod:`~winning_ticket.model`: the sparse teacher-student model and its data.
- :mod:`~winning_ticket.risk`: empirical risk (2), gradient and Hessian (numpy reference).
- :mod:`~winning_ticket.agd`: Algorithm 1 as run in the experiments (numpy reference).
- :mod:`~winning_ticket.engine`: the batched torch engine (CPU or GPU).
- :mod:`~winning_ticket.rates`: convergence-rate estimation.
- :mod:`~winning_ticket.profiles`: problem sizes for the ``smoke``, ``book`` and ``paper`` profiles.
- :mod:`~winning_ticket.convergence`: the Convergence chapter's experiment and claims (Fig. 3).
- :mod:`~winning_ticket.claims`: claim verdicts computed from data.
- :mod:`~winning_ticket.plotting`: the book's figure style.
"""

__version__ = "0.1.0"
