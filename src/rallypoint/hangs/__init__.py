"""Stacks of running workers: faulthandler's dumps parsed, digested, judged (all pure)."""
