"""Benchmarks run by `make bench`; results go to BENCHMARKS.md with the command that made them."""
