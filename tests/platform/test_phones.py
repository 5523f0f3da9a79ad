"""Phone numbers as people type them, in the core both the visitor's join form and the
messaging services use (konsil.platform.core.phones)."""

from __future__ import annotations

import pytest

from konsil.platform.core.phones import PHONE_MAX, normalise_phone


@pytest.mark.parametrize(
    ("typed", "country", "e164"),
    [
        ("412 34 567", "NO", "+4741234567"),
        ("+47 412 34 567", "DE", "+4741234567"),
        ("0047 412-34-567", "SE", "+4741234567"),
        ("030 1234567", "DE", "+49301234567"),
    ],
)
def test_a_number_as_typed_becomes_e164(typed: str, country: str, e164: str) -> None:
    assert normalise_phone(typed, country) == e164


@pytest.mark.parametrize("typed", ["", "555", "12345678", "kari", "+47 412\n34 567", "4" * (PHONE_MAX + 1)])
def test_what_is_no_phone_number_is_none(typed: str) -> None:
    assert normalise_phone(typed, "NO") is None
