"""memelearning: gesture reactions for video meetings.

This package holds only what every component shares: the ``memelearning`` command
(each subcommand is a thin wrapper over its component's library), settings loading
and logging. The components live in the top-level packages ``publisher``,
``worker``, ``reactions`` and ``models``.
"""

__version__ = "0.1.0"
