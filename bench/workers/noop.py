"""A worker that does nothing: launch cost is all that is left to measure."""
