"""Compatibility tests: rallypoint against the real torchrun, side by side."""
