"""`make bench`: the speed figures (bench/run.py is the entry point)."""
