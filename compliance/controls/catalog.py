"""Control catalogs: one TOML file per framework, decoded with msgspec and checked.

Each control cites its framework's own id, says in our words what it asks, names the
promises it evidences (docs/promises.md, P1…P20) and is met either by an automated check
(an evidence collector and a pass rule) or by an attestation an owner signs in the portal.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Annotated, Any, Literal, get_args

import msgspec

FrameworkId = Literal["gdpr", "hipaa", "nen7510", "normen"]
FRAMEWORK_IDS: tuple[str, ...] = get_args(FrameworkId)

# The evidence collectors of issue 13 (item 2); a check may only name one of these.
Collector = Literal[
    "retention",
    "encryption",
    "keys",
    "access_log",
    "residency",
    "dsr",
    "sessions",
    "subprocessors",
    "network_tests",
    "consent",
]
COLLECTORS: tuple[str, ...] = get_args(Collector)

# The checks each collector's observation reports (``compliance/evidence``); a control's
# ``rules`` name the ones that decide it: it passes when all of them pass.
COLLECTOR_RULES: dict[str, frozenset[str]] = {
    "retention": frozenset({"data_within_retention", "purges_ran", "audit_records_kept"}),
    "encryption": frozenset({"sealed_columns", "transport_encrypted", "calls_end_to_end"}),
    "keys": frozenset({"key_rotation", "key_service_reachable"}),
    "access_log": frozenset(
        {
            "chain_verifies",
            "entries_in_period",
            "individual_actors",
            "nen7513_fields",
            "log_reads_logged",
            "admin_access_with_reason",
            "subject_extract",
        }
    ),
    "residency": frozenset({"receipts_valid", "control_plane_holds_none"}),
    "dsr": frozenset({"access_within_deadline", "rectification_logged", "erasure_complete", "export_valid"}),
    "sessions": frozenset({"idle_timeout", "strong_sign_in", "role_review", "auditor_grants"}),
    "subprocessors": frozenset({"processing_agreements", "transfer_mechanisms", "business_associate_agreements"}),
    "network_tests": frozenset({"results_unlinked"}),
    "consent": frozenset({"consent_recorded", "mails_with_consent"}),
}

PROMISE_IDS: frozenset[str] = frozenset(f"P{n}" for n in range(1, 21))

Text = Annotated[str, msgspec.Meta(min_length=1)]


class CatalogError(ValueError):
    """A catalog file that does not decode or breaks a rule; the message names file and control."""


class AutomatedCheck(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    collector: Collector
    pass_rule: Text
    # The collector's checks that decide the control (COLLECTOR_RULES); all must pass.
    rules: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]


class Attestation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Who signed and when are recorded with the signature; the catalog says how long it holds.
    statement: Text
    valid_days: Annotated[int, msgspec.Meta(ge=1, le=730)]


class Control(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: Text
    title: Text
    requirement: Text
    promises: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    check: AutomatedCheck | None = None
    attestation: Attestation | None = None


class Framework(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: FrameworkId
    name: Text
    controls: tuple[Control, ...]

    def control(self, control_id: str) -> Control:
        for control in self.controls:
            if control.id == control_id:
                return control
        raise KeyError(control_id)


def parse_catalog(file_name: str, data: str | bytes) -> Framework:
    """Decode and check one catalog file; ``file_name`` is only used in error messages."""
    try:
        raw = tomllib.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{file_name}: not valid TOML: {exc}") from exc
    raw_controls = raw.pop("controls", [])
    if not isinstance(raw_controls, list) or not raw_controls:
        raise CatalogError(f"{file_name}: no [[controls]]")
    controls = tuple(_control(file_name, index, item) for index, item in enumerate(raw_controls))
    try:
        framework = msgspec.convert({**raw, "controls": []}, type=Framework)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{file_name}: {exc}") from exc
    stem = file_name.rsplit("/", 1)[-1].removesuffix(".toml")
    if framework.id != stem:
        raise CatalogError(f"{file_name}: framework id {framework.id!r} does not match the file name")
    seen: set[str] = set()
    for control in controls:
        if control.id in seen:
            raise CatalogError(f"{file_name}: control {control.id!r}: duplicate control id")
        seen.add(control.id)
    return msgspec.structs.replace(framework, controls=controls)


def _control(file_name: str, index: int, item: Any) -> Control:
    label = repr(item.get("id")) if isinstance(item, dict) and "id" in item else f"#{index + 1}"
    where = f"{file_name}: control {label}"
    try:
        control = msgspec.convert(item, type=Control)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    unknown = sorted(set(control.promises) - PROMISE_IDS)
    if unknown:
        raise CatalogError(f"{where}: unknown promise id(s) {', '.join(unknown)} (expected P1 to P20)")
    if len(set(control.promises)) != len(control.promises):
        raise CatalogError(f"{where}: a promise id is listed twice")
    if (control.check is None) == (control.attestation is None):
        raise CatalogError(f"{where}: needs exactly one of [check] or [attestation]")
    if control.check is not None:
        unknown_rules = sorted(set(control.check.rules) - COLLECTOR_RULES[control.check.collector])
        if unknown_rules:
            raise CatalogError(
                f"{where}: collector {control.check.collector!r} has no check(s) {', '.join(unknown_rules)}"
            )
    return control


def load_catalogs(directory: Traversable | None = None) -> dict[str, Framework]:
    """Every framework's catalog, by framework id, from the packaged files (or ``directory``)."""
    folder = directory if directory is not None else files(__package__ or "konsil.compliance.controls")
    frameworks: dict[str, Framework] = {}
    for framework_id in FRAMEWORK_IDS:
        name = f"{framework_id}.toml"
        entry = folder.joinpath(name)
        if not entry.is_file():
            raise CatalogError(f"{name}: catalog file missing")
        frameworks[framework_id] = parse_catalog(name, entry.read_bytes())
    strays = sorted(
        e.name for e in folder.iterdir() if e.name.endswith(".toml") and e.name[: -len(".toml")] not in FRAMEWORK_IDS
    )
    if strays:
        raise CatalogError(f"{', '.join(strays)}: not a known framework ({', '.join(FRAMEWORK_IDS)})")
    return frameworks
