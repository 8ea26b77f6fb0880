"""Benchmark support for ``lus-stream bench`` / ``tools/bench.py``: statistics, machine description
and report writing. Torch-free; the naive PyTorch reference loop runs in its own process."""
