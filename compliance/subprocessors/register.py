"""The subprocessor register (``register.toml``) as typed data, and its transfer check.

``load_register`` reads the shipped file; ``parse_register`` any text (the tests' bad
data). Every problem in the data stops loading with a ``RegisterError`` naming the
entry and the key. ``transfer_problems`` names each processor of a region that would
break the region's transfer rules: personal data of an EU/EEA region going outside the
EU/EEA without a transfer mechanism (GDPR Art. 44-46), PHI of a US region going to a
processor without a business associate agreement (HIPAA 164.308(b)).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Annotated, Any, Literal, get_args

import msgspec

DataCategory = Literal[
    "contact",
    "phone",
    "payment",
    "invoicing",
    "national_id",
    "call_metadata",
    "support",
    "usage",
    "technical",
    "none",
]
# Where a processor stores and processes the data, as a legal area.
Location = Literal["eu_eea", "us"]
Jurisdiction = Literal["eu_eea", "us"]
TransferMechanism = Literal["none_needed", "adequacy", "eu_us_dpf", "scc"]
RegionId = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\Z")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class RegisterError(ValueError):
    """One line naming the register entry and key that is wrong."""


class RegionRules(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The legal area a region's data belongs to: it decides which rules apply."""

    jurisdiction: Jurisdiction


class Subprocessor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Text
    purpose: Text
    data_categories: Annotated[list[DataCategory], msgspec.Meta(min_length=1)]
    # The regions whose data this processor receives.
    regions: Annotated[list[RegionId], msgspec.Meta(min_length=1)]
    location: Location
    transfer_mechanism: TransferMechanism
    personal_data: bool
    dpa_signed: bool
    dpa_signed_on: dt.date | None = None
    # Protected health information (HIPAA) and the business associate agreement that
    # allows it; recorded for processors of a US region.
    phi: bool = False
    baa: bool = False


class Register(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    regions: dict[RegionId, RegionRules]
    subprocessors: list[Subprocessor]

    def jurisdiction(self, region_id: str) -> Jurisdiction:
        rules = self.regions.get(region_id)
        if rules is None:
            raise RegisterError(f"region {region_id!r} is not in the subprocessor register")
        return rules.jurisdiction

    def for_region(self, region_id: str) -> list[Subprocessor]:
        """The processors that receive data of this region, in register order."""
        self.jurisdiction(region_id)
        return [p for p in self.subprocessors if region_id in p.regions]


class TransferProblem(msgspec.Struct, frozen=True):
    processor: str
    region: str
    rule: Literal["transfer", "baa"]
    reason: str


# The fixed sets, to name the allowed values when a value is not one of them.
_CHOICES: dict[str, Any] = {
    "data_categories": DataCategory,
    "location": Location,
    "transfer_mechanism": TransferMechanism,
}


def _entry_error(index: int, raw: Any, error: msgspec.ValidationError) -> RegisterError:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    entry = f"subprocessors[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
    message = str(error).replace("`$.", "`").replace(" - at `$`", "")
    for key, choices in _CHOICES.items():
        if message.startswith("Invalid enum value") and f"`{key}" in message:
            message += f" (one of: {', '.join(get_args(choices))})"
    return RegisterError(f"{entry}: {message}")


def parse_register(text: str) -> Register:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegisterError(f"subprocessor register is not valid TOML: {exc}") from None
    entries = raw.pop("subprocessors", None)
    if not isinstance(entries, list) or not entries:
        raise RegisterError("subprocessor register: no [[subprocessors]] entries")
    # Entry by entry, so that an error names the processor and not only its index.
    processors = []
    for index, entry in enumerate(entries):
        try:
            processors.append(msgspec.convert(entry, Subprocessor))
        except msgspec.ValidationError as exc:
            raise _entry_error(index, entry, exc) from None
    regions = raw.pop("regions", None)
    if not isinstance(regions, dict) or not regions:
        raise RegisterError("subprocessor register: no [regions.<id>] tables")
    rules = {}
    for region_id, table in regions.items():
        try:
            msgspec.convert(region_id, RegionId)
        except msgspec.ValidationError:
            raise RegisterError(f"regions.{region_id}: a region id is two lowercase letters") from None
        try:
            rules[region_id] = msgspec.convert(table, RegionRules)
        except msgspec.ValidationError as exc:
            message = str(exc).replace("`$.", "`").replace(" - at `$`", "")
            raise RegisterError(f"regions.{region_id}: {message}") from None
    try:
        register = msgspec.convert({**raw, "regions": {}, "subprocessors": []}, Register)
    except msgspec.ValidationError as exc:
        raise RegisterError(f"subprocessor register: {exc}") from None
    register = msgspec.structs.replace(register, regions=rules, subprocessors=processors)
    _check_consistent(register)
    return register


def _check_consistent(register: Register) -> None:
    seen: set[str] = set()
    for p in register.subprocessors:
        where = f"subprocessor {p.name!r}"
        if p.name in seen:
            raise RegisterError(f"{where}: listed twice")
        seen.add(p.name)
        for region in p.regions:
            if region not in register.regions:
                raise RegisterError(f"{where}: regions: {region!r} has no [regions.{region}] table")
        if ("none" in p.data_categories) != (not p.personal_data) or (
            not p.personal_data and len(p.data_categories) > 1
        ):
            raise RegisterError(f"{where}: data_categories: ['none'] alone if and only if personal_data = false")
        if p.phi and not p.personal_data:
            raise RegisterError(f"{where}: phi = true needs personal_data = true")
        if p.location == "us" and p.transfer_mechanism == "adequacy":
            # The US has no general adequacy decision; its partial one is the DPF.
            raise RegisterError(f"{where}: transfer_mechanism: a US location relies on 'eu_us_dpf' or 'scc'")
        if p.dpa_signed_on is not None and not p.dpa_signed:
            raise RegisterError(f"{where}: dpa_signed_on given but dpa_signed = false")


def load_register() -> Register:
    """The register shipped with the package."""
    text = resources.files("konsil.compliance.subprocessors").joinpath("register.toml").read_text(encoding="utf-8")
    return parse_register(text)


# The integrations a region's settings can turn on, by provider name, and the register
# entry of each in each region it may serve (tests/compliance/test_subprocessors.py keeps
# the register in step; a provider a region uses must have its entry for that region).
INTEGRATIONS: dict[str, dict[str, str]] = {
    "stripe": {"eu": "Stripe (EU)", "us": "Stripe (US)"},
    "sinch": {"eu": "Sinch"},
    "twilio": {"us": "Twilio"},
    "criipto": {"eu": "Criipto"},
}


def integration_entry(register: Register, provider: str, region_id: str) -> Subprocessor:
    """The register entry of an integration a region uses; ``RegisterError`` when the
    provider is unknown or not in the register for that region."""
    name = INTEGRATIONS.get(provider, {}).get(region_id)
    if name is None:
        raise RegisterError(f"integration {provider!r} has no subprocessor register entry for region {region_id!r}")
    for p in register.for_region(region_id):
        if p.name == name:
            return p
    raise RegisterError(f"integration {provider!r}: {name!r} is not in the register for region {region_id!r}")


def for_region(region_id: str, register: Register | None = None) -> list[Subprocessor]:
    return (register or load_register()).for_region(region_id)


def transfer_problems(register: Register, region_id: str) -> list[TransferProblem]:
    """Every processor of the region that breaks the rules of the region's jurisdiction.
    An empty list means the region's transfers are covered."""
    jurisdiction = register.jurisdiction(region_id)
    problems = []
    for p in register.for_region(region_id):
        if (
            jurisdiction == "eu_eea"
            and p.personal_data
            and p.location != "eu_eea"
            and p.transfer_mechanism == "none_needed"
        ):
            problems.append(
                TransferProblem(
                    p.name,
                    region_id,
                    "transfer",
                    f"{p.name} receives personal data of region {region_id} in {p.location} "
                    "(outside the EU/EEA) without a transfer mechanism (GDPR Art. 44-46)",
                )
            )
        if jurisdiction == "us" and p.phi and not p.baa:
            problems.append(
                TransferProblem(
                    p.name,
                    region_id,
                    "baa",
                    f"{p.name} handles PHI of region {region_id} without a business "
                    "associate agreement (HIPAA 164.308(b))",
                )
            )
    return problems
