"""Benchmarks: side-by-side runs against bare apps and the libraries users would pick instead.

``python -m benchmarks.http`` (production HTTP stacks), ``python -m benchmarks.redis``,
``python benchmarks/memory.py``; see ``docs/benchmarks.md``.
"""
