"""Benchmarks printed by ``lr-benchmark``: each module exposes ``run(args)``."""
