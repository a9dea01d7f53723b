"""``python -m rallypoint``: the same as the ``rallypoint`` command."""

from rallypoint.cli import entry

if __name__ == "__main__":
    entry()
