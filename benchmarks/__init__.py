"""Benchmarks of the streamlearn engine on the real broker and Redis.

``python -m benchmarks.harness`` runs them and records the results under ``benchmarks/results``.
"""
