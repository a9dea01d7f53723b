"""Rendezvous: which nodes are in this round, their order, and where rank 0 listens."""
