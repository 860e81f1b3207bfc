"""Benchmarks, run from the repository root as `python -m bench.<name>` (`make bench`).

Each prints tables with its conditions; `--smoke` runs it once, small, as the test command does."""
