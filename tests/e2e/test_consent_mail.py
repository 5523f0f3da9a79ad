"""Consent to members' optional e-mails (P13) against a running EU region whose mail goes
to a real SMTP server in this process (aiosmtpd):

- accepting an invitation offers the onboarding and feature e-mails, unticked; a ticked
  box is recorded (source "invitation", the wording's version, the page's language) with
  its access-log entry, an unticked one records nothing and brings nothing;
- ``konsil mail feature-news`` mails only the members who agreed, prints counts and no
  address, and refuses a bad subject clearly."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ViewportSize, expect

from konsil.tenants import consent
from tests.conftest import Stack, fetch
from tests.e2e.browser_kit import assert_accessible, chromium, new_context, new_page
from tests.e2e.mail_support import MailServer, mail_stack

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
SHOTS = Path("/tmp/konsil-consent")
PHONE: ViewportSize = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(pg_database: Any, tmp_path_factory: pytest.TempPathFactory, mail: MailServer) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("consent-mail-stack")
    with mail_stack("consentmail", pg_database, run_dir, mail) as running:
        yield running


def db(stack: Stack, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(fetch(stack.dsns["eu"], sql, *args))


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def invite(stack: Stack, mail: MailServer, client: httpx.Client, slug: str, language: str) -> tuple[str, str]:
    email = f"invited-{uuid.uuid4().hex[:8]}@praxis.example"
    made = client.post(
        f"/api/v1/orgs/{slug}/invitations", json={"email": email, "role": "expert", "language": language}
    )
    assert made.status_code == 201, made.text
    return email, mail.wait_for(email)[0].link("invitations")


def accept(link: str, name: str, **choices: str) -> tuple[httpx.Response, str]:
    browser = httpx.Client(timeout=30)
    page = browser.get(link)
    assert page.status_code == 200, page.text
    answer = browser.post(
        link, data={"name": name, "password": PASSWORD, "confirm": PASSWORD, "_csrf": csrf_of(page), **choices}
    )
    return answer, page.text


def member_id(stack: Stack, slug: str, client: httpx.Client, email: str) -> uuid.UUID:
    [found] = [m for m in client.get(f"/api/v1/orgs/{slug}/members").json() if m["email"] == email]
    return uuid.UUID(found["id"])


@pytest.fixture(scope="module")
def org(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    client = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    return {**made, "client": client}


def test_accepting_an_invitation_offers_the_optional_emails_unticked(
    stack: Stack, mail: MailServer, org: dict[str, Any]
) -> None:
    client, slug, org_id = org["client"], org["slug"], uuid.UUID(org["organisation_id"])

    # Nothing ticked: nothing recorded, no tips.
    plain, link = invite(stack, mail, client, slug, "en")
    answer, page = accept(link, "Plain Person")
    assert answer.status_code == 303, answer.text
    for purpose in ("onboarding_emails", "feature_emails"):
        box = re.search(rf'<input id="{purpose}" name="{purpose}" type="checkbox" value="yes"[^>]*>', page)
        assert box is not None and "checked" not in box.group(0), f"{purpose}: offered, unticked"
    assert "E-mails you choose to get (optional)" in page
    assert not db(stack, "SELECT id FROM consent_event WHERE subject_id = $1", member_id(stack, slug, client, plain))
    assert len(mail.to(plain)) == 1, "only the invitation"

    # Feature e-mails ticked on the Norwegian page: recorded with the wording and language.
    news, link = invite(stack, mail, client, slug, "nb")
    look_at_the_invitation_page(link, "nb")
    answer, page = accept(link, "Nora Nyhet", feature_emails="yes")
    assert answer.status_code == 303, answer.text
    assert "E-post du velger å få (valgfritt)" in page and "nye funksjoner i Konsil" in page
    who = member_id(stack, slug, client, news)
    [row] = db(stack, "SELECT * FROM consent_event WHERE subject_id = $1", who)
    assert (row["org_id"], row["subject_kind"], row["purpose"], row["action"], row["source"], row["language"]) == (
        org_id,
        "member",
        "feature_emails",
        "granted",
        "invitation",
        "nb",
    )
    assert row["wording_version"] == consent.VERSIONS["feature_emails"] and row["keep_until"] is None
    [entry] = db(
        stack,
        "SELECT * FROM access_log_entry WHERE org_id = $1 AND object_type = 'consent' AND object_id = $2",
        org_id,
        str(row["id"]),
    )
    assert entry["action"] == "create" and entry["subject_ref"] == f"member:{who}"
    assert news not in str(dict(entry))
    assert len(mail.to(news)) == 1, "no tips: not asked for"

    # Tips ticked: recorded, and the getting-started mail comes once, in the page's language.
    tips, link = invite(stack, mail, client, slug, "de")
    answer, _page = accept(link, "Tanja Tipp", onboarding_emails="yes")
    assert answer.status_code == 303, answer.text
    who = member_id(stack, slug, client, tips)
    [row] = db(stack, "SELECT purpose, action, source, language FROM consent_event WHERE subject_id = $1", who)
    assert tuple(row) == ("onboarding_emails", "granted", "invitation", "de")
    [_invitation, welcome] = mail.wait_for(tips, count=2)
    assert welcome.message["Content-Language"] == "de" and f"/{slug}/portal" in welcome.text
    [sent] = db(stack, "SELECT kind, purpose FROM consent_mail WHERE member_id = $1", who)
    assert tuple(sent) == ("getting_started", "onboarding_emails")

    # A form with a problem keeps the ticks, so the person does not lose them.
    _again, link = invite(stack, mail, client, slug, "en")
    browser = httpx.Client(timeout=30)
    page_answer = browser.get(link)
    wrong = browser.post(
        link,
        data={
            "name": "X",
            "password": PASSWORD,
            "confirm": "other",
            "_csrf": csrf_of(page_answer),
            "feature_emails": "yes",
        },
    )
    assert wrong.status_code == 400
    assert re.search(
        r'<input id="feature_emails" name="feature_emails" type="checkbox" value="yes" checked>', wrong.text
    )


def look_at_the_invitation_page(link: str, locale: str) -> None:
    """The page in Chromium on a phone: the choices fit, pass axe and are translated
    (screenshots in /tmp/konsil-consent/)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        for viewport, label in ((PHONE, "phone"), (None, "desktop")):
            context = new_context(browser, None, locale, viewport=viewport)
            try:
                page, watch = new_page(context)
                page.goto(link)
                assert page.locator("html").get_attribute("lang") == locale
                expect(page.locator("#feature_emails")).not_to_be_checked()
                expect(page.locator("#onboarding_emails")).not_to_be_checked()
                choices = page.locator(".email-choices").inner_text()
                for english in ("E-mails you choose", "Send me ", "Tick a box"):
                    assert english not in choices, f"[{locale}] untranslated: {choices}"
                if viewport is not None:
                    width = page.evaluate("() => document.documentElement.scrollWidth")
                    assert width <= viewport["width"], f"the page is {width} px wide on a phone"
                assert_accessible(page, f"invitation page with the e-mail choices [{locale}]")
                page.screenshot(path=SHOTS / f"invitation-{locale}-{label}.png", full_page=True)
                watch.assert_no_script_errors()
            finally:
                context.close()


def konsil(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", *args, "--config", str(stack.run_dir / "konsil.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_feature_news_goes_only_to_members_who_agreed(
    stack: Stack, mail: MailServer, org: dict[str, Any], tmp_path: Path
) -> None:
    client, slug = org["client"], org["slug"]
    agreed, link = invite(stack, mail, client, slug, "nb")
    assert accept(link, "Glad Leser", feature_emails="yes")[0].status_code == 303
    declined, link = invite(stack, mail, client, slug, "en")
    assert accept(link, "Quiet Person")[0].status_code == 303
    already = db(stack, "SELECT count(*) AS n FROM consent_mail WHERE kind = 'feature_news'")[0]["n"]

    subject = tmp_path / "subject.txt"
    body = tmp_path / "body.txt"
    subject.write_text("Nytt: skjermdeling\n")
    body.write_text("Nå kan du dele skjermen i samtalen.\n\nSlik gjør du det: trykk på knappen.\n")
    files = ["--subject-file", str(subject), "--body-file", str(body)]

    counted = konsil(stack, "mail", "feature-news", "--region", "eu", "--org", slug, *files, "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert f"{slug}: " in counted.stdout and "would get it" in counted.stdout
    consenting = int(re.search(rf"^{re.escape(slug)}: (\d+)$", counted.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert consenting >= 1
    assert len(mail.to(agreed)) == 1, "a dry run sends nothing"

    sent = konsil(stack, "mail", "feature-news", "--region", "eu", "--org", slug, *files)
    assert sent.returncode == 0, sent.stderr
    assert f"{slug}: {consenting}\n" in sent.stdout and "sent" in sent.stdout
    assert "@" not in sent.stdout + sent.stderr, "no address printed"
    [_invitation, news] = mail.wait_for(agreed, count=2)
    assert news.message["Subject"] == "Nytt: skjermdeling"
    assert "Nå kan du dele skjermen i samtalen." in news.text and "Hei," in news.text
    assert len(mail.to(declined)) == 1, "no agreement, no news"
    assert len(mail.to(org["owner"]["email"])) == 0 or all(
        m.message["Subject"] != "Nytt: skjermdeling" for m in mail.to(org["owner"]["email"])
    )
    after = db(stack, "SELECT count(*) AS n FROM consent_mail WHERE kind = 'feature_news'")[0]["n"]
    assert after - already == consenting

    # Bad input: a clear message, exit 2, nothing sent.
    unknown = konsil(stack, "mail", "feature-news", "--region", "eu", "--org", "no-such-org", *files)
    assert unknown.returncode == 2 and "no organisation 'no-such-org'" in unknown.stderr
    missing = konsil(
        stack,
        "mail",
        "feature-news",
        "--region",
        "eu",
        "--subject-file",
        str(tmp_path / "nope"),
        "--body-file",
        str(body),
    )
    assert missing.returncode == 2 and "cannot read the subject file" in missing.stderr
    subject.write_text("one\ntwo\n")
    refused = konsil(stack, "mail", "feature-news", "--region", "eu", *files)
    assert refused.returncode == 2 and "one line" in refused.stderr
    assert len(mail.to(agreed)) == 2
