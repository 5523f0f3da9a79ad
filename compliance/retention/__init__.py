"""Purge evidence: one row per purge run and data class."""
