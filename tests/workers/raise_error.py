"""Raise ValueError after printing a line to stderr (no @record)."""

import sys

print("about to fail", file=sys.stderr)
raise ValueError("bad shape (3, 4)")
