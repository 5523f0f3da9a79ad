"""Phone numbers as people type them: ``normalise_phone`` turns a number typed in the
organisation's country's format or in international format into E.164. Used by the
visitor's join form (tenants/visitor_pages.py) and a member's SMS alert number and a
client invitation by SMS (tenants/messaging), so it lives below both pages and services.

Showing numbers is elsewhere: ``konsil.platform.pages.rendering.format_phone`` (pages),
``konsil.platform.core.sms.mask_number`` (logs)."""

from __future__ import annotations

import phonenumbers

PHONE_MAX = 40  # characters as typed, spaces and dashes included


def normalise_phone(text: str, country: str) -> str | None:
    """The number in E.164 (+4741234567), typed in national format for the organisation's
    country or in international format; None when it is not a phone number one can call.

    A national entry must be a valid number of that country (digits typed into the wrong
    field are caught). An international one needs the length of a fixed-line or mobile
    number of its country: number ranges change faster than any library's data, and a
    visitor from abroad must not be turned away for it."""
    text = text.strip()
    if not text or len(text) > PHONE_MAX or not text.isprintable():
        return None
    try:
        parsed = phonenumbers.parse(text, country.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    international = text.startswith(("+", "00"))
    possible = phonenumbers.is_possible_number_for_type_with_reason(
        parsed, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE
    )
    if not (
        phonenumbers.is_valid_number(parsed)
        or (international and possible == phonenumbers.ValidationResult.IS_POSSIBLE)
    ):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
