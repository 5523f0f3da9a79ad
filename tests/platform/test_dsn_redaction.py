"""A database address as the commands print it (``konsil migrate``, ``check-config
--connect``): never a password, whether in the user part or in the query string."""

from __future__ import annotations

import pytest

from konsil.platform.cli.migrations import redact


@pytest.mark.parametrize(
    ("dsn", "printed"),
    [
        ("postgresql://konsil:s3cret-pw@pg.eu:5432/konsil_eu", "postgresql://konsil:***@pg.eu:5432/konsil_eu"),
        ("postgresql://konsil@pg.eu/konsil_eu?password=s3cret-pw", "postgresql://konsil@pg.eu/konsil_eu?…"),
        (
            "postgresql://konsil:a@pg.eu/db?sslmode=verify-full&sslpassword=s3cret-pw",
            "postgresql://konsil:***@pg.eu/db?…",
        ),
        ("sqlite:///var/konsil/eu.db", "sqlite:///var/konsil/eu.db"),
    ],
)
def test_a_printed_dsn_holds_no_password(dsn: str, printed: str) -> None:
    assert redact(dsn) == printed
    assert "s3cret" not in redact(dsn)
