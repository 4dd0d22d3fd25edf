"""Benchmarks behind ``python -m wsl.bench``: each measures the project's way of doing a job
against a plain baseline in the same run, so that ratios hold on any machine."""
