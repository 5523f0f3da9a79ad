"""The administration API behind the settings, rooms and integrations pages, against the
running stack: the organisation's language and country, the logo (what counts as an
image is decided from its bytes; nothing is stored on a bad upload; served publicly
with its SHA-256 as ETag), changing a room (title, welcome text, expert), and bad input
answered with 400 and a clear message, never 500."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def image(fmt: str = "PNG", size: tuple[int, int] = (120, 40), colour: tuple[int, int, int] = (31, 95, 191)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_png(min_bytes: int) -> bytes:
    """A real PNG larger than ``min_bytes`` (random pixels do not compress)."""
    side = int((min_bytes / 3) ** 0.5) + 64
    raw = Image.frombytes("RGB", (side, side), uuid.uuid4().bytes * (side * side * 3 // 16 + 1))
    buffer = io.BytesIO()
    raw.save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert len(data) > min_bytes
    return data


SVG = (
    b'<?xml version="1.0"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
)


@pytest.fixture
def org(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    made["client"] = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    return made


def logo_rows(stack: Stack, org_id: str) -> list[Any]:
    return asyncio.run(
        fetch(stack.dsns["eu"], "SELECT sha256 FROM organisation_logo WHERE org_id = $1", uuid.UUID(org_id))
    )


def test_language_and_country_are_settings_with_validation(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    base = f"/api/v1/orgs/{slug}"
    assert client.get(base + "/").json()["locale"] == "en"
    changed = client.patch(base + "/", json={"locale": "nb", "country": "NO", "retention_days": 14})
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in ("locale", "country", "retention_days")} == {
        "locale": "nb",
        "country": "NO",
        "retention_days": 14,
    }
    assert client.get(base + "/").json()["country"] == "NO"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"locale": "fr"}, "locale"),
        ({"locale": ""}, "locale"),
        ({"country": "no"}, "country"),
        ({"country": "NOR"}, "country"),
        ({"country": "US"}, "country must be one of"),  # no authority of the EU region's texts
        ({"country": "XX"}, "country must be one of"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": 91}, "retention_days"),
        ({"retention_days": "30"}, "retention_days"),
        ({"name": "Clinic\u0007"}, "name"),
        ({"name": "<b>Clinic</b>"}, "name"),
        ({"contract_end": "31.12.2027"}, "contract_end"),
        ({"colour": "blue"}, "colour"),
        ({}, "nothing to change"),
    ]
    for body, says in bad:
        answer = client.patch(base + "/", json=body)
        assert answer.status_code == 400, (body, answer.status_code, answer.text)
        assert says in answer.text, (body, answer.text)
    # Nothing of the refused changes was kept.
    assert {k: client.get(base + "/").json()[k] for k in ("locale", "country")} == {"locale": "nb", "country": "NO"}
    # An empty country is allowed again (the notices then name the EU's list of authorities).
    assert client.patch(base + "/", json={"country": ""}).json()["country"] == ""


def test_the_guard_reads_the_organisations_language(stack: Stack, org: dict[str, Any]) -> None:
    """The organisation's default language reaches the pages (the guard's own SQL reads it)."""
    client, slug = org["client"], org["slug"]
    assert client.patch(f"/api/v1/orgs/{slug}/", json={"locale": "de"}).status_code == 200
    page = client.get(f"/{slug}/portal/settings", headers={"accept": "text/html"})
    assert page.status_code == 200 and '<html lang="de">' in page.text


def test_a_logo_is_checked_stored_served_replaced_and_removed(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    region = stack.region_url("eu")
    api = f"/api/v1/orgs/{slug}/logo"
    anonymous = httpx.Client(base_url=region, timeout=30)
    assert anonymous.get(f"/{slug}/logo").status_code == 404
    assert client.get(api).status_code == 404

    png = image("PNG")
    # The content type sent says nothing: the bytes decide.
    stored = client.put(api, content=png, headers={"content-type": "text/plain"})
    assert stored.status_code == 200, stored.text
    facts = stored.json()
    assert facts == {
        "url": f"/{slug}/logo",
        "content_type": "image/png",
        "sha256": hashlib.sha256(png).hexdigest(),
        "size_bytes": len(png),
        "width": 120,
        "height": 40,
    }
    assert client.get(api).json()["sha256"] == facts["sha256"]

    served = anonymous.get(f"/{slug}/logo")
    assert served.status_code == 200 and served.content == png
    assert served.headers["content-type"] == "image/png"
    assert served.headers["etag"] == f'"{facts["sha256"]}"'
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "public" in served.headers["cache-control"]
    again = anonymous.get(f"/{slug}/logo", headers={"if-none-match": served.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # Through the control plane too (browser paths are sent to the region).
    via_control = httpx.get(f"{stack.control_url}/{slug}/logo", follow_redirects=True, timeout=30)
    assert via_control.status_code == 200 and via_control.content == png

    # Refused, each with its own code, and the stored logo stays as it was.
    refused: list[tuple[bytes, int, str]] = [
        (b"Dear clinic,\nthis is a letter, not a picture.\n", 400, "not_an_image"),  # a text file renamed .png
        (png[: len(png) // 2], 400, "not_an_image"),  # a PNG cut short: a plausible header is not enough
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400, "not_an_image"),
        (SVG, 400, "svg_refused"),
        (b"  <svg xmlns='http://www.w3.org/2000/svg'/>", 400, "svg_refused"),
        (image("GIF"), 400, "not_an_image"),
        (image("BMP"), 400, "not_an_image"),
        (image("PNG", size=(5000, 10)), 400, "image_dimensions"),
        (b"", 400, "empty"),
    ]
    for body, status, code in refused:
        answer = client.put(api, content=body, headers={"content-type": "image/png"})
        assert answer.status_code == status and answer.json()["error"] == code, (body[:20], answer.text)
    too_large = client.put(api, content=noisy_png(1024 * 1024 + 1), headers={"content-type": "image/png"})
    assert too_large.status_code == 413, too_large.text
    assert logo_rows(stack, org["organisation_id"])[0]["sha256"] == facts["sha256"]

    # Replaced by a JPEG, then a WebP.
    jpeg = image("JPEG", colour=(200, 30, 30))
    assert client.put(api, content=jpeg).json()["content_type"] == "image/jpeg"
    assert anonymous.get(f"/{slug}/logo").headers["content-type"] == "image/jpeg"
    webp = image("WEBP")
    assert client.put(api, content=webp).json()["content_type"] == "image/webp"
    served = anonymous.get(f"/{slug}/logo")
    assert served.content == webp and served.headers["etag"] == f'"{hashlib.sha256(webp).hexdigest()}"'
    assert len(logo_rows(stack, org["organisation_id"])) == 1

    # Experts and auditors may not change it; a token has no scope for it.
    expert = stack.add_member(client, slug, "expert")
    expert_client = stack.login(region, slug, expert["email"])
    assert expert_client.put(api, content=png).status_code == 403
    assert expert_client.delete(api).status_code == 403
    auditor = stack.add_member(client, slug, "auditor")
    assert stack.login(region, slug, auditor["email"]).put(api, content=png).status_code == 403

    assert client.delete(api).status_code == 204
    assert anonymous.get(f"/{slug}/logo").status_code == 404
    assert client.delete(api).status_code == 204, "removing no logo is no error"
    assert logo_rows(stack, org["organisation_id"]) == []
    # A room cannot take the logo's address.
    taken = client.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "logo", "title": "Logo"})
    assert taken.status_code == 409


def test_a_room_is_renamed_given_a_welcome_text_and_another_expert(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    region = stack.region_url("eu")
    rooms = f"/api/v1/orgs/{slug}/rooms"
    made = client.post(rooms, json={"slug": "consult", "title": "Consultation", "welcome_text": "Welcome!"})
    assert made.status_code == 201, made.text
    room = made.json()
    assert room["welcome_text"] == "Welcome!"
    text = "Please have your insurance card ready.\nThe doctor will let you in shortly."
    changed = client.patch(f"{rooms}/{room['id']}", json={"title": "Dr. Berg's room", "welcome_text": text})
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Dr. Berg's room" and changed.json()["welcome_text"] == text
    assert changed.json()["slug"] == "consult", "the link does not change"
    listed = {r["id"]: r for r in client.get(rooms).json()}
    assert listed[room["id"]]["welcome_text"] == text

    expert = stack.add_member(client, slug, "expert")
    given = client.patch(f"{rooms}/{room['id']}", json={"expert_id": expert["id"]})
    assert given.status_code == 200 and given.json()["expert_id"] == expert["id"]

    # The expert changes their own room, but gives it to nobody; another's room is not theirs.
    expert_client = stack.login(region, slug, expert["email"])
    assert expert_client.patch(f"{rooms}/{room['id']}", json={"welcome_text": ""}).status_code == 200
    away = expert_client.patch(f"{rooms}/{room['id']}", json={"expert_id": org["owner_id"]})
    assert away.status_code == 403
    other = client.post(rooms, json={"slug": "owners-room", "title": "Owner"}).json()
    assert expert_client.patch(f"{rooms}/{other['id']}", json={"title": "Mine now"}).status_code == 403

    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "nothing to change"),
        ({"title": ""}, "title"),
        ({"title": "x" * 121}, "title"),
        ({"title": "Room\u0000"}, "title"),
        ({"title": "Room\n2"}, "title"),
        ({"welcome_text": "x" * 501}, "welcome_text"),
        ({"welcome_text": "Bell\u0007"}, "welcome_text"),
        ({"welcome_text": "Escape\u001b[31m"}, "welcome_text"),
        ({"welcome_text": "C1\u0085"}, "welcome_text"),
        ({"welcome_text": 5}, "welcome_text"),
        ({"expert_id": "not-a-uuid"}, "expert_id"),
        ({"expert_id": str(uuid.uuid4())}, "not a member of this organisation"),
        ({"slug": "new-address"}, "slug"),
    ]
    for body, says in bad:
        answer = client.patch(f"{rooms}/{room['id']}", json=body)
        assert answer.status_code == 400, (body, answer.status_code, answer.text)
        assert says in answer.text, (body, answer.text)
    auditor = stack.add_member(client, slug, "auditor")
    assert (
        stack.login(region, slug, auditor["email"]).patch(f"{rooms}/{room['id']}", json={"title": "A"}).status_code
        == 403
    )
    assert client.patch(f"{rooms}/{uuid.uuid4()}", json={"title": "Gone"}).status_code == 404
    assert client.patch(f"{rooms}/not-a-uuid", json={"title": "Gone"}).status_code in (400, 404)
    # A welcome text of exactly 500 characters fits; surrounding spaces are trimmed.
    fits = client.patch(f"{rooms}/{room['id']}", json={"welcome_text": "y" * 500})
    assert fits.status_code == 200 and fits.json()["welcome_text"] == "y" * 500
    trimmed = client.patch(f"{rooms}/{room['id']}", json={"welcome_text": " \n Hello \n"})
    assert trimmed.status_code == 200 and trimmed.json()["welcome_text"] == "Hello"
    # Another organisation's owner does not reach it.
    stranger = stack.signup("eu")
    other_owner = stack.login(region, stranger["slug"], stranger["owner"]["email"])
    assert other_owner.patch(f"{rooms}/{room['id']}", json={"title": "Mine"}).status_code == 404
    entries = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT action FROM access_log_entry WHERE org_id = $1 AND object_type = 'room' AND object_id = $2",
            uuid.UUID(org["organisation_id"]),
            room["id"],
        )
    )
    assert [e["action"] for e in entries].count("update") == 5, "each change of the room is access-logged"


def test_a_tokens_last_use_is_noted(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    made = client.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "Records", "scopes": ["rooms:read"]}).json()
    assert client.get(f"/api/v1/orgs/{slug}/tokens").json()[0]["last_used_at"] is None
    used = httpx.get(
        f"{stack.region_url('eu')}/api/v1/orgs/{slug}/rooms",
        headers={"authorization": f"Bearer {made['token']}"},
        timeout=30,
    )
    assert used.status_code == 200
    listed = client.get(f"/api/v1/orgs/{slug}/tokens").json()[0]
    assert listed["last_used_at"] is not None and listed["id"] == made["id"]
