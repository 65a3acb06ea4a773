"""d365nb's benchmarks against its sandbox: ``python -m benchmarks`` (see README.md)."""
