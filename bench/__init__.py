"""Benchmarks of the memelearning pipeline. Each prints a table and writes JSON; none
is a unit test. Run ``python -m bench.pipeline --help``."""
