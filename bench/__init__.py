"""Benchmarks of podpath: tables, not tests (see docs/performance.md)."""
