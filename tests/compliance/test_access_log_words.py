"""Access-log entries and the data-subject overview in people's words and languages: no
reference, code or field name of the log is shown as stored; legal wording comes from
the organisation's jurisdiction and country."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import konsil.tenants
from konsil.compliance.access_log.words import Names, Words
from konsil.compliance.dsr.overview import overview_text
from konsil.compliance.dsr.schemas import (
    AccessData,
    ExportOrganisation,
    ExportRequest,
    SubjectExport,
    VisitData,
)
from konsil.platform.pages import i18n

# The tenants' catalogs, as the region service registers them.
i18n.register_catalogs(Path(konsil.tenants.__path__[0]) / "locale")

MEMBER = uuid.UUID("3f2a1b2c-0000-4000-8000-000000000001")
VISIT = uuid.UUID("55f88329-0000-4000-8000-000000000002")
AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)


def test_who_what_and_why_are_words_in_each_language() -> None:
    names = Names({f"member:{MEMBER}": ("Anna Berg", "owner")}, {"token:t1": "Rooms sync"}, complete=True)
    en, de = Words("en", names), Words("de", names)
    assert en.actor(f"member:{MEMBER}", "owner") == "Anna Berg (owner)"
    assert de.actor(f"member:{MEMBER}", "owner") == "Anna Berg (Inhaber)"
    assert en.actor("member:99999999-0000", "expert") == "Former member 99999999 (expert)"
    assert en.actor("token:t1", "integration") == "Connected system “Rooms sync”"
    assert de.actor(f"visitor:{VISIT}", "visitor") == "Besucher des Besuchs 55f88329"
    assert en.actor("system:retention", "system") == "Konsil (automatic)"
    assert en.actor("operator:cli", "operator") == "Konsil operations"
    assert en.subject(f"visit:{VISIT}") == "Visit 55f88329" and en.subject("*") == "\u2013"
    assert de.subject(f"member:{MEMBER}") == "Mitglied Anna Berg"
    assert (en.action("read"), en.data("data_subject_request"), en.outcome("denied")) == (
        "Viewed",
        "Data-subject request",
        "Refused",
    )
    assert de.purpose("refused: role") == "Verweigert: die Rolle erlaubt es nicht"
    assert en.purpose("compliance audit: review the access log") == "Compliance audit: Reviewing the access log"
    assert Words("nl").purpose("data-subject request (erasure)") == "Verzoek van betrokkene: verwijdering"
    # Without the organisation's member list, a member is not called former.
    assert Words("en").actor(f"member:{MEMBER}", "expert") == "Member 3f2a1b2c (expert)"


def export(region: str, country: str) -> SubjectExport:
    return SubjectExport(
        format="konsil.data-subject-export",
        version=1,
        generated_at=AT,
        organisation=ExportOrganisation("kliniek", "Kliniek Noord", region, "EU/EEA", 30, country),
        request=ExportRequest(uuid.uuid4(), "access", "phone", "+31612345678", AT, AT, "completed"),
        members=[],
        visits=[VisitData(VISIT, "spreekuur", "Jan Jansen", "+31612345678", "ended", AT, AT, AT, AT, AT, [])],
        payments=[],
        accessed_by=[
            AccessData(
                AT,
                f"member:{MEMBER}",
                "expert",
                f"member:{MEMBER}",
                "read",
                "visit",
                str(VISIT),
                "provide the service",
                "success",
                "region:eu/region-service",
            )
        ],
        notes=[],
    )


def test_the_overview_is_in_words_and_names_the_authority_of_the_country() -> None:
    text = overview_text(export("eu", "NL"), "nl")
    assert "Autoriteit Persoonsgegevens" in text and "AVG art. 15" in text and "Datatilsynet" not in text
    assert "Bezoeken: 1" in text and "+31 6 12345678" in text and "Jan Jansen" in text
    assert "Lid 3f2a1b2c (behandelaar). Bekeken: Bezoekgegevens. Levering van de dienst. Uitgevoerd." in text
    for internal in ("member:", "provide the service", "success", "completed", "ended", "visit:"):
        assert internal not in text, internal
    us = overview_text(export("us", ""), "en")
    assert "Office for Civil Rights" in us and "GDPR" not in us
