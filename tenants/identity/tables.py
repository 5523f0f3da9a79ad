"""Region tables of the national eID check: the attempts under way (no personal data:
hashes and one-time values) and the identity a visit was verified as (sealed)."""

from __future__ import annotations

from piccolo.columns import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from konsil.platform.core.keys.tables import EncryptedText


class IdentityAttempt(Table, tablename="identity_attempt"):
    """One trip of a visitor's browser to the eID broker and back. The state travels
    through the browser; only its hash is kept, and it is used once (``used_at``)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    visit_id = UUID(index=True)
    eid = Varchar(length=16)
    state_hash = Varchar(length=64, unique=True)
    nonce = Varchar(length=64)
    # The PKCE code verifier: a one-time secret of this attempt, never sent to the browser.
    code_verifier = Varchar(length=128)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)
    used_at = Timestamptz(null=True, default=None)
    # "" while under way; then verified | rejected | unavailable | cancelled.
    outcome = Varchar(length=12, default="")


class VisitIdentity(Table, tablename="visit_identity"):
    """Who a visit's visitor proved to be with a national eID: the national ID number
    and the verified name, sealed with the organisation's key. Deleted with its visit."""

    visit_id = UUID(primary_key=True)
    org_id = UUID(index=True)
    eid = Varchar(length=16)  # no_bankid | dk_mitid | se_bankid
    national_id = EncryptedText()
    verified_name = EncryptedText()
    verified_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)


IDENTITY_TABLES: list[type[Table]] = [IdentityAttempt, VisitIdentity]
