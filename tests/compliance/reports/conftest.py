"""The report-job tests run on the evidence tests' region container (a real PostgreSQL
region database and a local keyring)."""

from tests.compliance.evidence.conftest import ctx, evidence_dsn

__all__ = ["ctx", "evidence_dsn"]
