"""The record of processing activities (GDPR Art. 30) as CSV, from the data map.

``data_map.toml`` names every stored personal-data field of a region database and the
processing activity it serves; ``write_ropa`` prints one row per field with its
activity's purpose, subjects, legal basis, retention and recipients, in the columns of
Fides' data-map export (COMPLIANCE.md §1). Recipients are the subprocessors of the
report's region (the same list the report prints); a recipient outside the region's
legal area is a third-country transfer, named with its transfer mechanism.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator
from importlib.resources import files
from typing import IO, Annotated, Final

import msgspec

from konsil.compliance.reports.labels import LOCATION_LABELS, TRANSFER_LABELS
from konsil.compliance.reports.model import ReportDocument
from konsil.compliance.subprocessors.register import Subprocessor

MEDIA_TYPE: Final = "text/csv"

# The Fides taxonomy keys this data map may use (fideslang default taxonomy).
FIDES_CATEGORIES: Final = frozenset(
    {
        "user.name",
        "user.contact",
        "user.contact.email",
        "user.contact.phone_number",
        "user.authorization.credentials",
        "user.authorization.password",
        "user.behavior",
        "user.device",
        "user.device.ip_address",
        "user.demographic.language",
        "user.financial.credit_card",
        "user.government_id.national_identification_number",
        "user.payment",
        "user.telemetry",
        "user.unique_id.pseudonymous",
    }
)
FIDES_DATA_USES: Final = frozenset(
    {
        "essential.service",
        "essential.service.authentication",
        "essential.service.operations",
        "essential.service.operations.support",
        "essential.service.payment_processing",
        "essential.service.security",
    }
)
FIDES_SUBJECTS: Final = frozenset({"visitor", "employee", "customer", "patient"})

Text = Annotated[str, msgspec.Meta(min_length=1)]

SEALED_PROTECTION: Final = (
    "Encrypted with the organisation's own key (AES-256-GCM, data key wrapped in the region's key service); "
    "destroying that key makes every copy unreadable"
)


class DataMapError(ValueError):
    """The data map file is wrong; the message names the entry and key."""


class Activity(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Text
    purpose: Text
    data_use: Text
    role: Text
    data_subjects: Annotated[list[str], msgspec.Meta(min_length=1)]
    legal_basis: Text
    special_category: Text
    retention: Text
    internal_recipients: Text
    recipients: list[str]
    source: Text
    rights: Text
    dpia: Text


class Field(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    table: Text
    column: Text
    activity: Text
    category: Text
    description: Text
    sealed: bool
    protection: str = ""


class DataMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    activities: dict[str, Activity]
    fields: list[Field]


def parse_data_map(text: str) -> DataMap:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataMapError(f"data map is not valid TOML: {exc}") from None
    try:
        data_map = msgspec.convert(raw, DataMap)
    except msgspec.ValidationError as exc:
        raise DataMapError(f"data map: {exc}") from None
    for key, activity in data_map.activities.items():
        if activity.data_use not in FIDES_DATA_USES:
            raise DataMapError(f"activities.{key}.data_use: {activity.data_use!r} is not a Fides data use we use")
        unknown = sorted(set(activity.data_subjects) - FIDES_SUBJECTS)
        if unknown:
            raise DataMapError(f"activities.{key}.data_subjects: unknown {', '.join(unknown)}")
    seen: set[tuple[str, str]] = set()
    for index, field in enumerate(data_map.fields):
        where = f"fields[{index}] ({field.table}.{field.column})"
        if (field.table, field.column) in seen:
            raise DataMapError(f"{where}: listed twice")
        seen.add((field.table, field.column))
        if field.activity not in data_map.activities:
            raise DataMapError(f"{where}.activity: no activity {field.activity!r}")
        if field.category not in FIDES_CATEGORIES:
            raise DataMapError(f"{where}.category: {field.category!r} is not a Fides data category we use")
        if not field.sealed and not field.protection:
            raise DataMapError(f"{where}.protection: say how a field that is not sealed is kept")
    return data_map


def load_data_map() -> DataMap:
    """The data map shipped with the package."""
    return parse_data_map(files("konsil.compliance.reports").joinpath("data_map.toml").read_text(encoding="utf-8"))


HEADER: Final = (
    "Fides System",
    "Dataset",
    "Field",
    "Description",
    "Purpose of Processing",
    "Data use (Fides taxonomy)",
    "Role or Responsibility",
    "Categories of Individuals",
    "Categories of Personal Data (Fides Taxonomy)",
    "Categories of Recipients",
    "Third Country Transfers",
    "Safeguards for Exceptional Transfers of Personal Data",
    "Retention Schedule",
    "General Description of Security Measures",
    "Article 6 lawful basis for processing personal data",
    "Article 9 condition for processing special category data",
    "Rights available to individuals",
    "The source of the personal data (if applicable)",
    "Data Protection Impact Assessment required?",
)


def _home(jurisdiction: str) -> str:
    return "eu_eea" if jurisdiction == "eu_eea" else "us"


def _transfers(recipients: list[Subprocessor], jurisdiction: str) -> tuple[str, str]:
    abroad = [p for p in recipients if p.personal_data and p.location != _home(jurisdiction)]
    if not abroad:
        return "None", "Not applicable"
    places = "; ".join(f"{p.name}: {LOCATION_LABELS.get(p.location, p.location)}" for p in abroad)
    safeguards = "; ".join(
        f"{p.name}: {TRANSFER_LABELS.get(p.transfer_mechanism, p.transfer_mechanism)}" for p in abroad
    )
    return places, safeguards


def rows(doc: ReportDocument, data_map: DataMap) -> Iterator[tuple[str, ...]]:
    yield HEADER
    processors = {p.name: p for p in doc.subprocessors}
    system = f"Konsil, region {doc.region} (for {doc.org_name})"
    for field in data_map.fields:
        activity = data_map.activities[field.activity]
        recipients = [processors[name] for name in activity.recipients if name in processors]
        named = "; ".join([activity.internal_recipients, *(f"{p.name} ({p.purpose})" for p in recipients)])
        transfers, safeguards = _transfers(recipients, doc.jurisdiction)
        yield (
            system,
            field.table,
            field.column,
            field.description,
            activity.purpose,
            activity.data_use,
            activity.role,
            ", ".join(activity.data_subjects),
            field.category,
            named,
            transfers,
            safeguards,
            activity.retention,
            SEALED_PROTECTION if field.sealed else field.protection,
            activity.legal_basis,
            activity.special_category,
            activity.rights,
            activity.source,
            activity.dpia,
        )


def write_ropa(doc: ReportDocument, out: IO[bytes], data_map: DataMap | None = None) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    try:
        csv.writer(text).writerows(rows(doc, data_map or load_data_map()))
        text.flush()
    finally:
        text.detach()


def ropa_bytes(doc: ReportDocument, data_map: DataMap | None = None) -> bytes:
    buffer = io.BytesIO()
    write_ropa(doc, buffer, data_map)
    return buffer.getvalue()
