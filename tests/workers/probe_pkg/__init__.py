"""A package to run with ``-m``: its ``__main__`` is the probe."""
