"""Every message a page shows has a translation in Norwegian Bokmål, German and Dutch, and
each translation keeps the placeholders of its English id (else a page would fail or show
``%(name)s`` to people)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from konsil.platform.pages import i18n, legal

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_the_catalog_check_finds_nothing_missing() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "i18n"), "check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("lang", ["nb", "de", "nl"])
def test_translations_keep_their_placeholders_and_are_not_fuzzy(lang: str) -> None:
    files = sorted(ROOT.glob(f"*/locale/{lang}/LC_MESSAGES/*.po")) + sorted(
        ROOT.glob(f"platform/*/locale/{lang}/LC_MESSAGES/*.po")
    )
    assert files, "no catalogs found"
    for path in files:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        for message in catalog:
            if not message.id or not isinstance(message.id, str):
                continue
            assert not message.fuzzy, f"{path.name}: fuzzy entry {message.id!r}"
            assert isinstance(message.string, str) and message.string, f"{path.name}: empty {message.id!r}"
            assert set(PLACEHOLDER.findall(message.id)) == set(PLACEHOLDER.findall(message.string)), (
                f"{path.name}: placeholders differ in {message.id!r}"
            )


def test_the_language_follows_choice_then_browser_then_organisation() -> None:
    assert i18n.choose("de", "nb-NO,nb;q=0.9", "nl") == "de"
    assert i18n.choose(None, "fr-FR,nb;q=0.5,en;q=0.9", "nl") == "en"
    assert i18n.choose(None, "no", None) == "nb"
    assert i18n.choose(None, "fr-FR,fr;q=0.9", "nl") == "nl"
    assert i18n.choose("xx", None, None) == "en"
    assert i18n.from_accept_language("de;q=0, nl;q=0.2") == "nl"


def test_legal_wording_follows_the_jurisdiction_and_country() -> None:
    eu = legal.legal_text("eu", "NL", "nl", "Kliniek", 14)
    assert eu.law == "GDPR" and "AVG" in eu.legal_basis and "Autoriteit Persoonsgegevens" in eu.complaint
    assert "14" in eu.consent and "Kliniek" in eu.consent
    us = legal.legal_text("us", "", "en", "Clinic", 30)
    assert us.law == "HIPAA" and "GDPR" not in us.legal_basis + us.consent + us.rights + us.complaint
    assert "Office for Civil Rights" in us.complaint
    assert legal.legal_text("eu", "", "de", "X", 1).authority.url.endswith("members_en")
