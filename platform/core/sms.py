"""Text messages (SMS) to members: what the region's SMS provider offers the rest of the
platform, whatever provider a region uses (Sinch in the EU, Twilio in the US;
``tenants/messaging/providers.py``).

Two kinds of failure, because the caller (a background task) must treat them
differently: ``SmsRejected`` means the provider refused this message (a bad number, a
wrong credential) and sending it again cannot help; ``SmsUnavailable`` means the
provider could not be reached or failed itself (a timeout, a 5xx) and a later retry,
with the same idempotency key, may succeed.

A phone number is personal data: no message of these errors names it, nor any
credential; ``mask_number`` gives the form a log line may show ("+47 *** ** 123").
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import phonenumbers


class SmsReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's answer to an accepted message: its own id of the message (a Sinch
    batch id, a Twilio message SID), for a later delivery report."""

    provider: str
    message_id: str


class SmsError(Exception):
    """A text message not sent; ``reason`` names neither the number nor a credential."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SmsRejected(SmsError):
    """The provider refused the message (4xx: a bad number, a wrong credential, a sender
    it does not allow) or it was refused before sending: never retried."""


class SmsUnavailable(SmsError):
    """The provider could not take the message now (a timeout, a refused connection, a
    5xx, a 429): retry later with the same idempotency key."""


class SmsSender(Protocol):
    """A region's SMS provider."""

    @property
    def description(self) -> str:
        """The provider for an operator's eyes (no credential)."""
        ...

    async def send(self, to_e164: str, text: str, idempotency_key: str) -> SmsReceipt:
        """Send ``text`` to the number ``to_e164`` (E.164, e.g. "+4712345678");
        ``idempotency_key`` is the same for every retry of one alert."""
        ...


def is_e164(number: str) -> bool:
    """Whether ``number`` is a valid phone number written in E.164 (``+`` and digits only),
    by libphonenumber's data."""
    if not number.startswith("+") or not number[1:].isdigit() or not 8 <= len(number) <= 16:
        return False
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == number
    )


def require_e164(number: str) -> str:
    """``number`` if it is valid E.164, else ``SmsRejected`` (whose message does not repeat it)."""
    if not is_e164(number):
        raise SmsRejected("the phone number is not a valid international number (E.164, e.g. +4712345678)")
    return number


def mask_number(number: str) -> str:
    """A phone number as a log line may show it: the country code and the last three
    digits only ("+47 *** ** 123"); anything unparsable is all stars."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "***"
    national = str(parsed.national_number)
    if len(national) < 6:
        return f"+{parsed.country_code} ***"
    return f"+{parsed.country_code} *** ** {national[-3:]}"
