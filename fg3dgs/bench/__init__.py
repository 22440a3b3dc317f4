"""Benchmarks; run ``python -m fg3dgs.bench --help``."""
