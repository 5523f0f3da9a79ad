"""Residency, proven across processes and databases: each organisation's rows live
only in its region's database, the control database holds none of the personal
strings used, and a region process is given no other region's credentials."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

REGION_TABLES_WITH_ORG = ("organisation", "member", "room", "api_token", "member_session", "access_log_entry")


async def dump_all_tables(dsn: str) -> str:
    """Every row of every table, as text."""
    tables = await fetch(dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    parts: list[str] = []
    for row in tables:
        rows = await fetch(dsn, f'SELECT t::text AS line FROM "{row["table_name"]}" t')  # noqa: S608 (names from the catalogue)
        parts.extend(r["line"] for r in rows)
    return "\n".join(parts).lower()


async def rows_of(dsn: str, org_id: uuid.UUID) -> dict[str, int]:
    counts = {}
    for table in REGION_TABLES_WITH_ORG:
        column = "id" if table == "organisation" else "org_id"
        counts[table] = (await fetch(dsn, f"SELECT count(*) AS n FROM {table} WHERE {column} = $1", org_id))[0]["n"]  # noqa: S608
    return counts


@pytest.fixture(scope="module")
def populated(stack: Stack) -> dict[str, dict[str, object]]:
    """An EU and a US organisation, with members and rooms added through the gateway."""
    made: dict[str, dict[str, object]] = {}
    for region, person in (("eu", "Ingrid Østergaard"), ("us", "Jamal Washington")):
        tag = stack.unique(f"res-{region}")
        email = f"{tag}@clinic-{region}.example"
        signed = stack.signup(region, slug=tag, name=person, email=email)
        gateway = stack.login(stack.control_url, tag, email)
        strings = [person.lower(), email]
        for index, role in enumerate(("expert", "admin")):
            member_name = f"{person} Kollege{index}"
            phone = f"+4798765{index}{region == 'eu':d}21"
            member_email = f"{tag}-{role}@clinic-{region}.example"
            response = gateway.post(
                f"/api/v1/orgs/{tag}/members",
                json={
                    "name": member_name,
                    "email": member_email,
                    "role": role,
                    "phone": phone,
                    "password": "correct horse battery",
                },
            )
            assert response.status_code == 201, response.text
            strings += [member_name.lower(), member_email, phone]
        room = gateway.post(f"/api/v1/orgs/{tag}/rooms", json={"slug": f"{tag}-room", "title": "Sprechstunde"})
        assert room.status_code == 201, room.text
        assert gateway.get(f"/api/v1/orgs/{tag}/members").status_code == 200
        made[region] = {"org_id": uuid.UUID(signed["organisation_id"]), "strings": strings, "slug": tag}
    return made


def test_each_organisations_rows_exist_only_in_its_regions_database(stack: Stack, populated: dict) -> None:  # type: ignore[type-arg]
    for region, other in (("eu", "us"), ("us", "eu")):
        org_id = populated[region]["org_id"]
        own = asyncio.run(rows_of(stack.dsns[region], org_id))
        assert own["organisation"] == 1 and own["member"] == 3 and own["room"] == 1 and own["access_log_entry"] >= 6
        assert set(asyncio.run(rows_of(stack.dsns[other], org_id)).values()) == {0}
        own_text = asyncio.run(dump_all_tables(stack.dsns[region]))
        for value in populated[region]["strings"]:
            assert value.lower() not in own_text, "personal data is stored encrypted in its own region too"
        foreign_text = asyncio.run(dump_all_tables(stack.dsns[other]))
        for value in populated[region]["strings"]:
            assert value.lower() not in foreign_text, f"{region} data found in {other}"


def test_the_control_database_holds_none_of_the_personal_strings(stack: Stack, populated: dict) -> None:  # type: ignore[type-arg]
    text = asyncio.run(dump_all_tables(stack.dsns["control"]))
    assert populated["eu"]["slug"] in text, "the scan does read the control tables"
    for region in ("eu", "us"):
        for value in populated[region]["strings"]:
            assert value.lower() not in text
            for part in value.lower().split():
                if len(part) > 3:
                    assert part not in text, part


def _process_view(stack: Stack, name: str) -> str:
    """All a process was given: its command line, environment and configuration file."""
    pid = stack.procs[name].pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    environ = Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
    config = cmdline.split("--config ")[1].split()[0]
    return "\n".join([cmdline, environ, Path(config).read_text()])


def test_the_eu_region_process_was_given_no_us_credentials(stack: Stack) -> None:
    eu_view = _process_view(stack, "region eu")
    us = stack.settings.region("us")
    assert stack.settings.region("eu").internal_secret in eu_view, "the view is the EU process's own"
    assert us.internal_secret not in eu_view
    assert stack.vault["us"][1] not in eu_view and stack.vault["us"][0] not in eu_view, "no US Vault token or URL"
    assert stack.vault["eu"][1] in eu_view, "its own Vault token is there"
    assert stack.dsns["us"].rsplit("/", 1)[1] not in eu_view
    assert stack.dsns["control"].rsplit("/", 1)[1] not in eu_view
    us_view = _process_view(stack, "region us")
    assert stack.settings.region("eu").internal_secret not in us_view
    assert stack.dsns["eu"].rsplit("/", 1)[1] not in us_view
    assert stack.vault["eu"][1] not in us_view


def test_the_control_process_was_given_no_region_database_or_vault(stack: Stack) -> None:
    view = _process_view(stack, "control")
    for region in ("eu", "us"):
        assert stack.dsns[region].rsplit("/", 1)[1] not in view
        assert stack.vault[region][1] not in view
