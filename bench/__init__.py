"""Konsil benchmarks: ``python -m bench`` runs them all and prints JSON (see README.md)."""
