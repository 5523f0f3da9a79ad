"""Region table of evidence: every observation an evidence collector made, as it was
made (compliance/evidence/model.py), so a report can pin the observations it was
decided on and an auditor can re-hash the evidence they were given.

Observations are audit records *about* an organisation, like its access log: they are
kept 6 years (HIPAA 164.316(b)(2)(i), docs/promises.md retention table), also after the
organisation itself is removed. So ``EvidenceObservation`` is deliberately NOT one of
``regions.tables.ORGANISATION_OWNED`` (the rows removed with their organisation), and it
holds no personal data: counts, ages, settings, pseudonymous ids and hashes only.
"""

from __future__ import annotations

from piccolo.columns import UUID, Text, Timestamptz, Varchar
from piccolo.table import Table


class EvidenceObservation(Table, tablename="evidence_observation"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    collector = Varchar(length=24, index=True)  # one of controls.catalog.COLLECTORS
    method = Varchar(length=8)  # TEST | EXAMINE
    description = Text()
    period_start = Timestamptz()
    period_end = Timestamptz()
    collected_at = Timestamptz(index=True)
    result = Varchar(length=16)  # pass | fail | not_applicable: the worst of its checks
    checks = Text()  # JSON list of model.Check
    evidence = Text()  # model.evidence_bytes(evidence), as UTF-8 text: re-hashes to evidence_sha256
    evidence_sha256 = Varchar(length=64)
    # The report that pinned this observation (set when the report stores what it used).
    report_id = UUID(null=True, default=None, index=True)


EVIDENCE_TABLES: list[type[Table]] = [EvidenceObservation]
