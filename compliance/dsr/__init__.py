"""Data-subject requests (P17): access, rectification, erasure, portability."""
