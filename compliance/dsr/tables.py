"""Region tables of data-subject requests (P17)."""

from __future__ import annotations

from piccolo.columns import UUID, Text, Timestamptz, Varchar
from piccolo.table import Table

from konsil.platform.core.keys.tables import EncryptedText


class DataSubjectRequest(Table, tablename="data_subject_request"):
    """A data subject's request to the organisation (the controller): access,
    rectification, erasure or portability. The identifier the subject gave (e-mail
    or phone) is personal data: stored sealed, found by its blind index only."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    kind = Varchar(length=16)  # access | rectification | erasure | portability
    identifier_kind = Varchar(length=8)  # email | phone
    identifier = EncryptedText()
    identifier_index = Varchar(length=64, index=True)
    received_at = Timestamptz()
    due_at = Timestamptz(index=True)  # received_at + 28 days (P17: "within 4 weeks")
    status = Varchar(length=12, default="received")  # received | completed | rejected
    filed_by = Varchar(length=80)  # pseudonymous actor, as in the access log
    completed_at = Timestamptz(null=True, default=None)
    fulfilled_by = Varchar(length=80, default="")
    # What the fulfilment did, as counts (JSON); never personal data.
    outcome = Text(default="")


DSR_TABLES: list[type[Table]] = [DataSubjectRequest]
