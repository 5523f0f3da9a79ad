"""Architecture rules as tests: personal data is declared encrypted, and every text field
of a request body follows the shared rules. That the control plane imports no region code
is an import-linter contract (pyproject.toml; tests/platform/test_layers.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from piccolo.columns import Text, Varchar
from piccolo.table import Table

from konsil.platform.core.keys.tables import EncryptedText
from konsil.platform.core.settings import Settings, VaultSettings
from konsil.platform.core.text import LINE_CHAR, MULTILINE_CHAR
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from konsil.tenants.tables import PERSONAL_COLUMNS
from tests.conftest import bare_region

ROOT = Path(__file__).resolve().parents[2]

# Column names that hold personal data wherever they appear.
PERSONAL_NAME = re.compile(r"(^|_)(name|first_name|last_name|email|phone|mobile|address|birth|national_id|ssn|note)s?$")
# Columns whose names look personal but are not: each with the reason.
NOT_PERSONAL = {
    ("organisation", "name"): "the organisation's business name, shown on its public join pages",
    ("access_log_entry", "source_address"): "the acting user's network access point, which NEN 7513 requires "
    "in the log; it outlives the data and so cannot be shredded with the tenant key",
}
# Keyed hashes next to encrypted columns, not the values themselves.
BLIND_INDEX = re.compile(r"_(lookup|index)$")


def unencrypted_personal_columns(tables: list[type[Table]]) -> list[str]:
    found = []
    for table in tables:
        for column in table._meta.columns:
            key = (table._meta.tablename, column._meta.name)
            if key in NOT_PERSONAL or BLIND_INDEX.search(column._meta.name):
                continue
            if PERSONAL_NAME.search(column._meta.name) and not isinstance(column, EncryptedText):
                found.append(f"{key[0]}.{key[1]}")
    return found


def test_every_personal_data_column_is_declared_encrypted() -> None:
    assert unencrypted_personal_columns(REGION_TABLES) == []
    assert {("member", "name"), ("member", "email"), ("member", "phone")} <= PERSONAL_COLUMNS


def test_the_rule_catches_a_personal_column_declared_in_plain_text() -> None:
    class Visitor(Table, tablename="visitor_example"):
        name = Text()
        phone = Varchar()
        email = EncryptedText()

    assert unencrypted_personal_columns([Visitor]) == ["visitor_example.name", "visitor_example.phone"]


# --- every text field of every request body follows konsil.platform.core.text ----------------------

# Fields with a pattern of their own rather than the shared line/multiline rule: each refuses
# every control character too (checked below), and says why it differs.
OWN_PATTERNS = {
    "konsil.tenants.schemas.MemberIn.password": "passwords: any character but controls, <> included",
    "konsil.tenants.schemas.OwnerIn.password": "passwords: any character but controls, <> included",
    "konsil.tenants.schemas.LoginIn.password": "passwords: any character but controls, <> included",
    "konsil.tenants.schemas.RoomIn.slug": "a slug: lower-case letters, digits and hyphens",
    "konsil.tenants.schemas.NewOrganisation.slug": "a slug: lower-case letters, digits and hyphens",
    "konsil.tenants.schemas.NewOrganisation.country": "an ISO 3166 country code (two capital letters) or empty",
    "konsil.tenants.schemas.OrganisationPatch.country": "an ISO 3166 country code (two capital letters) or empty",
    "konsil.tenants.schemas.LoginIn.organisation": "a slug: lower-case letters, digits and hyphens",
    "konsil.media_nodes.network_test.service.NetworkTestIn.language": "a language tag (BCP 47)",
    "konsil.media_nodes.network_test.service.NetworkTestIn.relay": "a media node id",
    "konsil.tenants.schemas.MemberIn.phone": "a phone number in E.164",
    "konsil.tenants.schemas.MemberPatch.phone": "a phone number in E.164",
    "konsil.tenants.schemas.OwnerIn.phone": "a phone number in E.164",
}
# Form posts are read as raw strings so that the page can answer with a human message;
# the handler converts them to a checked Struct (Email, VisitorForm) before any use.
FORM_FIELDS = {
    "konsil.tenants.login_pages.LoginForm.email": "converted to Email before use",
    "konsil.tenants.login_pages.LoginForm.password": "only ever compared with a stored hash",
    "konsil.tenants.login_pages.LoginForm.organisation": "only compared with slugs in memory",
    "konsil.tenants.login_pages.LoginForm.csrf": "compared with the CSRF cookie",
    "konsil.tenants.pages.CsrfForm.csrf": "compared with the session's CSRF token",
    "konsil.tenants.consent_pages.PreferencesForm.csrf": "compared with the session's CSRF token",
    "konsil.tenants.visitor_pages.JoinForm.name": "converted to VisitorForm (PersonName) before use",
    "konsil.tenants.visitor_pages.JoinForm.phone": "converted to VisitorForm (Phone) before use",
    "konsil.tenants.visitor_pages.JoinForm.consent": "only compared with 'yes'",
    "konsil.tenants.account_pages.ResetAskForm.email": "converted to Email before use",
    "konsil.tenants.account_pages.ResetAskForm.csrf": "compared with the form's CSRF cookie",
    "konsil.tenants.account_pages.NewPasswordForm.password": "checked like Password (length, no controls), then hashed",
    "konsil.tenants.account_pages.NewPasswordForm.confirm": "only compared with the password",
    "konsil.tenants.account_pages.NewPasswordForm.csrf": "compared with the form's CSRF cookie",
    "konsil.tenants.account_pages.AcceptForm.name": "converted to Acceptance (PersonName) before use",
    "konsil.tenants.account_pages.AcceptForm.password": "converted to Acceptance (Password) before use",
    "konsil.tenants.account_pages.AcceptForm.confirm": "only compared with the password",
    "konsil.tenants.account_pages.AcceptForm.csrf": "compared with the form's CSRF cookie",
    "konsil.tenants.admin_members.InviteForm.email": "converted to InvitationIn (Email) before use",
    "konsil.tenants.admin_members.InviteForm.role": "only compared with the role names",
    "konsil.tenants.admin_members.InviteForm.access_until": "parsed as a date, else refused",
    "konsil.tenants.admin_members.InviteForm.tz_offset": "parsed as a number of minutes, else refused",
    "konsil.tenants.admin_members.InviteForm.language": "only compared with the languages Konsil speaks",
    "konsil.tenants.admin_members.InviteForm.csrf": "compared with the session's CSRF token",
    "konsil.tenants.admin_members.RoleForm.role": "only compared with the role names",
    "konsil.tenants.admin_members.RoleForm.access_until": "parsed as a date, else refused",
    "konsil.tenants.admin_members.RoleForm.tz_offset": "parsed as a number of minutes, else refused",
    "konsil.tenants.admin_members.RoleForm.csrf": "compared with the session's CSRF token",
}
# Values no text field may hold, whatever its pattern.
REFUSED_EVERYWHERE = ["\x00", "a\x00", "a\x85b", "a\x1bb", "a\ud800", "a\x7f"]


def request_body_text_fields(app: Any) -> dict[str, msgspec.inspect.StrType]:
    """Every str field reachable from a request body (``data``) of every route."""
    fields: dict[str, msgspec.inspect.StrType] = {}
    seen: set[type] = set()

    def walk(info: msgspec.inspect.Type, where: str) -> None:
        if isinstance(info, msgspec.inspect.Metadata):
            walk(info.type, where)
        elif isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for field in info.fields:
                walk(field.type, f"{info.cls.__module__}.{info.cls.__qualname__}.{field.name}")
        elif isinstance(info, msgspec.inspect.UnionType):
            for member in info.types:
                walk(member, where)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType | msgspec.inspect.VarTupleType):
            walk(info.item_type, where)
        elif isinstance(info, msgspec.inspect.DictType):
            walk(info.key_type, where)
            walk(info.value_type, where)
        elif isinstance(info, msgspec.inspect.StrType):
            fields[where] = info

    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None:
                walk(msgspec.inspect.type_info(data.annotation), route.path_format)
    return fields


def test_every_text_field_of_a_request_body_uses_the_shared_validator(tmp_path: Path) -> None:
    region = bare_region(vault=VaultSettings(backend="local", keyring_path=str(tmp_path / "keyring")))
    app = create_region_app(Settings(mode="services", discovery_key="discovery-key-for-tests", regions=[region]))
    fields = request_body_text_fields(app)
    assert "konsil.tenants.schemas.MemberIn.name" in fields and "konsil.media_nodes.ops_api.CordonIn.reason" in fields
    problems = []
    for name, info in sorted(fields.items()):
        if name in FORM_FIELDS:
            continue
        if info.pattern is None:
            problems.append(f"{name}: no pattern")
            continue
        shared = LINE_CHAR in info.pattern or MULTILINE_CHAR in info.pattern
        if not shared and name not in OWN_PATTERNS:
            problems.append(f"{name}: a pattern of its own ({info.pattern!r}) instead of konsil.platform.core.text")
        if info.pattern.endswith("$"):
            problems.append(f"{name}: ends with $, which also matches before a final line feed (use \\Z)")
        for bad in REFUSED_EVERYWHERE + ([] if MULTILINE_CHAR in info.pattern else ["a\n"]):
            if re.search(info.pattern, bad):
                problems.append(f"{name}: accepts {bad!r}")
    assert problems == []
    assert set(FORM_FIELDS) <= set(fields), "the form allowlist names fields that exist"
    assert set(OWN_PATTERNS) <= set(fields), "the pattern allowlist names fields that exist"
