"""Benchmarks of the provider against the Hyper-V host emulator: ``python -m bench.run``."""
