"""Legal wording per jurisdiction, language and country, from ``legal.toml`` (data, not
code): the join notice's legal basis and consent, the data subject's rights and the
supervisory authority of the organisation's country (EU) or HHS (US)."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from konsil.platform.pages import i18n

LEGAL_FILE = Path(__file__).resolve().parent / "legal.toml"


class Authority(msgspec.Struct, frozen=True):
    name: str
    url: str


class LegalText(msgspec.Struct, frozen=True):
    law: str  # GDPR or HIPAA
    notice_title: str
    legal_basis: str
    consent: str
    rights: str
    complaint: str
    authority: Authority


@functools.lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    with LEGAL_FILE.open("rb") as handle:
        return tomllib.load(handle)


def countries(jurisdiction: str) -> list[str]:
    """Countries with a named authority in a jurisdiction (signup and settings offer them)."""
    return sorted(code for code in _data()["authorities"].get(jurisdiction, {}) if code != "default")


def legal_text(jurisdiction: str, country: str, locale: str, org: str, days: int) -> LegalText:
    """The wording for an organisation (name, retention days) in one language."""
    data = _data()
    kind = jurisdiction if jurisdiction in data["jurisdictions"] else "eu"
    section = data["jurisdictions"][kind]
    texts = section["text"].get(locale) or section["text"][i18n.DEFAULT_LOCALE]
    authorities = data["authorities"][kind]
    found = authorities.get(country.upper()) or authorities["default"]
    # An authority's own name stays as it is; a description of one is said in the page's language.
    authority = Authority(name=found.get("names", {}).get(locale, found["name"]), url=found["url"])
    values = {"org": org, "days": days, "authority": authority.name}
    return LegalText(
        law=section["law"],
        authority=authority,
        **{key: texts[key] % values for key in ("notice_title", "legal_basis", "consent", "rights", "complaint")},
    )
