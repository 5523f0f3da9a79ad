"""Region table of control attestations.

An attestation is an audit record, like the access log: it is not among the rows that
go with their organisation (regions/tables.py ORGANISATION_OWNED), so reports and
verification still show, for a deleted organisation, who attested what and when
(kept 6 years, as the access log). It holds member ids, never personal data."""

from __future__ import annotations

from piccolo.columns import UUID, Text, Timestamptz, Varchar
from piccolo.table import Table


class ControlAttestation(Table, tablename="control_attestation"):
    """An owner's signature under a control's statement (compliance/controls/*.toml,
    ``[controls.attestation]``): valid from ``signed_at`` until ``expires_at``
    (``signed_at`` + the catalog's ``valid_days``), or until it is withdrawn."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    framework = Varchar(length=16)
    control_id = Varchar(length=80)
    statement = Text()  # the catalog's statement as it was signed
    signed_by = UUID()  # the owner (member id)
    signed_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    withdrawn_at = Timestamptz(null=True, default=None)
    withdrawn_by = UUID(null=True, default=None)


ATTESTATION_TABLES: list[type[Table]] = [ControlAttestation]
