"""A region in people's words: which law applies to the data kept there, never the
region's id. Used where a person chooses or is sent to a region (signup, login).

Operators name a region's jurisdiction in free text ("EU/EEA (GDPR)", "United States
(HIPAA)"); the legal family (``eu`` or ``us``, the sections of ``legal.toml``) is read
from the region id when it names one, else from that text."""

from __future__ import annotations

import re

import msgspec

from konsil.platform.pages.i18n import N_

# The words of each legal family: the region's name and what choosing it means.
WORDS: dict[str, tuple[str, str]] = {
    "eu": (N_("Europe (EU/EEA)"), N_("Data stays in the EU/EEA; the GDPR applies.")),
    "us": (N_("United States"), N_("Data stays in the United States; HIPAA applies.")),
}
OTHER_EXPLANATION = N_("Data stays in this region.")

_EU = re.compile(r"\b(eu|eea|gdpr|europe|european)\b", re.IGNORECASE)
_US = re.compile(r"\b(us|usa|hipaa|united states)\b", re.IGNORECASE)


class RegionWords(msgspec.Struct, frozen=True):
    """A region as a page shows it: ``name`` and ``explanation`` are message ids (to be
    translated where shown) unless ``translate`` is false (an operator's own label)."""

    name: str
    explanation: str
    kind: str  # "eu", "us" or "" (another legal family)
    translate: bool = True


def kind_of(region_id: str, jurisdiction: str) -> str:
    """The legal family of a region ("eu", "us"), or "" when neither fits."""
    if region_id in WORDS:
        return region_id
    if _EU.search(jurisdiction):
        return "eu"
    if _US.search(jurisdiction):
        return "us"
    return ""


def words(region_id: str, jurisdiction: str) -> RegionWords:
    kind = kind_of(region_id, jurisdiction)
    if kind:
        name, explanation = WORDS[kind]
        return RegionWords(name, explanation, kind)
    # Another jurisdiction: the operator's own label (not a message id), and plain words.
    return RegionWords(jurisdiction.strip() or region_id.upper(), OTHER_EXPLANATION, "", translate=False)
