"""Lifecycle events of a run, as JSON lines."""
