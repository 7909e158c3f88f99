"""The medians the benchmarks keep for the summary at the end of the run (conftest.py):
name -> median seconds, or bytes per second for the bandwidths."""

RESULTS = {}
