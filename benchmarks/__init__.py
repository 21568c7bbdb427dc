"""Benchmarks, run by hand (``make bench`` or ``python -m benchmarks``), never by the test suite.

Each ``benchmarks/*.py`` is a plain script that prints or writes its results into ``docs/``.
"""
