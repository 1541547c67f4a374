"""Why Lottery Tickets Win: the package behind the companion book.

Three layers, each importing only from the ones before it:

- :mod:`winning_ticket.algorithms`: the papers' mathematics (model, risk, Algorithm 1, the
  batched engine, tensor initialization, pruning, matrix sensing, subset sum, networks);
- :mod:`winning_ticket.experiments`: seeding, validation, sweeps, statistics, claims,
  profiles, the chapter protocol, plotting;
- :mod:`winning_ticket.chapters`: one module per chapter of the book.

The names a notebook uses most are importable from here.
"""

__version__ = "0.1.0"

from .algorithms.networks import DEFAULT_CACHE  # noqa: E402
from .experiments.claims import Claim, claims_table, verdict_lines  # noqa: E402
from .experiments.plotting import export_figure, use_book_style  # noqa: E402

__all__ = ["Claim", "DEFAULT_CACHE", "claims_table", "export_figure", "use_book_style", "verdict_lines", "__version__"]
