"""graphwire's benchmark suites: ``python -m benchmarks SUITE``."""
