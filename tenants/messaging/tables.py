"""The send records of the messaging area: SMS arrival alerts to members and client
invitations sent from the dashboard. Neither holds a phone number, an e-mail address
or a visitor's name: an alert names the member and the visit by id (the number is read
from the member's sealed record when it is sent), an invitation keeps a keyed hash of
the address it went to (a blind index under the organisation's own key) and nothing
else of it. Both expire with the organisation's visitor retention (``expires_at``) and
go with the data class ``messaging_records`` of the purge."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class SmsAlert(Table, tablename="sms_alert"):
    """One "someone is waiting" text to one member for one visit. The row's id is the
    background task's id, so a redelivered or retried task continues the same alert and
    the provider sees the same idempotency key."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    member_id = UUID(index=True)
    room_id = UUID()
    visit_id = UUID(index=True)
    # queued | sent | failed | skipped_rate_limit | skipped_not_waiting
    status = Varchar(length=24, default="queued")
    attempts = Integer(default=0)
    # Why it failed or was skipped, in words (never the number).
    reason = Varchar(length=200, default="")
    provider = Varchar(length=16, default="")
    provider_message_id = Varchar(length=100, default="")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    # When the next try is due (a retry after an outage); a queued alert long past it
    # lost its task (a broker that was down) and is handed out again.
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    # A worker holds the alert until then while it sends (two deliveries never both send).
    claimed_until = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(index=True)


class ClientInvitation(Table, tablename="client_invitation"):
    """A room's link sent to a client by SMS or e-mail. Only a keyed hash of the address
    stays (``recipient_hash``: the organisation's blind index of the normalised number or
    e-mail address, so a data-subject request can find it); the address itself was used
    for the send and never stored."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    room_id = UUID(index=True)
    member_id = UUID(null=True, default=None, index=True)  # who sent it; None for an integration token
    channel = Varchar(length=8)  # sms | email
    recipient_hash = Varchar(length=64, index=True)
    language = Varchar(length=5, default="en")
    # sending | sent | failed
    status = Varchar(length=12, default="sending")
    provider = Varchar(length=16, default="")
    provider_message_id = Varchar(length=100, default="")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    sent_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(index=True)


MESSAGING_TABLES: list[type[Table]] = [SmsAlert, ClientInvitation]
