"""Experiment suite: tasks, data modules, Hydra entry points and the seed-study reproduction."""
