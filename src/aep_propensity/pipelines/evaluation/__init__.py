"""Evaluate the propensity models against the simulator's truth."""
