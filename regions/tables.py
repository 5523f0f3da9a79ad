"""Every table a region database holds, from each area that keeps region data."""

from piccolo.table import Table

from konsil.compliance.access_log.tables import ACCESS_LOG_TABLES
from konsil.compliance.attestations.tables import ATTESTATION_TABLES
from konsil.compliance.dsr.tables import DSR_TABLES
from konsil.compliance.evidence.tables import EVIDENCE_TABLES
from konsil.compliance.reports.tables import REPORT_TABLES
from konsil.compliance.retention.tables import RETENTION_TABLES
from konsil.media_nodes.network_test.tables import NETWORK_TEST_TABLES
from konsil.media_nodes.tables import MEDIA_NODE_TABLES
from konsil.tenants.consent import CONSENT_TABLES
from konsil.tenants.identity.tables import IDENTITY_TABLES
from konsil.tenants.messaging.tables import MESSAGING_TABLES
from konsil.tenants.payments.tables import PAYMENT_ORGANISATION_OWNED, PAYMENT_TABLES
from konsil.tenants.tables import TENANT_TABLES, Organisation, PaymentRecord

REGION_TABLES: list[type[Table]] = [
    *TENANT_TABLES,
    *IDENTITY_TABLES,
    *MESSAGING_TABLES,
    *PAYMENT_TABLES,
    *ACCESS_LOG_TABLES,
    *MEDIA_NODE_TABLES,
    *NETWORK_TEST_TABLES,
    *RETENTION_TABLES,
    *DSR_TABLES,
    *ATTESTATION_TABLES,
    *EVIDENCE_TABLES,
    *REPORT_TABLES,
    *CONSENT_TABLES,
]

# The rows that go with their organisation (contract end + 90 days, `konsil org delete`),
# before the organisation's own row; payment records stay for their legal hold (P9, P18).
# Audit records stay too (the access log, control attestations, evidence observations,
# compliance reports: 6 years, also after the organisation is gone): never listed here;
# nor the consent records, kept as proof 3 years after each decision stops holding.
ORGANISATION_OWNED: list[type[Table]] = [
    t
    for t in [
        *TENANT_TABLES,
        *IDENTITY_TABLES,
        *MESSAGING_TABLES,
        *PAYMENT_ORGANISATION_OWNED,
        *NETWORK_TEST_TABLES,
        *DSR_TABLES,
    ]
    if t not in (Organisation, PaymentRecord)
]
