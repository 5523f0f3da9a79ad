"""Access-log entries in a person's words and language, for the organisation's access-log
page and its CSV export: who (members by name, connected systems by their label, Konsil
itself), what they did to which data, about whom, why and with what outcome. No
reference, field name or code of the log is shown as it is stored, except a short
reference (the first 8 characters of an id) where a person needs one to tell records
apart."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from konsil.platform.pages.i18n import N_, gettext

ROLES: Mapping[str, str] = {
    "owner": N_("owner"),
    "admin": N_("administrator"),
    "expert": N_("expert"),
    "auditor": N_("auditor"),
    "integration": N_("connected system"),
    "system": N_("Konsil (automatic)"),
    "anonymous": N_("someone not logged in"),
    "visitor": N_("visitor"),
    "support": N_("Konsil support"),
    "operator": N_("Konsil operations"),
}

ACTIONS: Mapping[str, str] = {
    "create": N_("Created"),
    "read": N_("Viewed"),
    "update": N_("Changed"),
    "delete": N_("Deleted"),
    "export": N_("Exported"),
    "search": N_("Searched"),
}

OUTCOMES: Mapping[str, str] = {"success": N_("Done"), "failure": N_("Failed"), "denied": N_("Refused")}

OBJECTS: Mapping[str, str] = {
    "visit": N_("Visit details"),
    "call": N_("Call record"),
    "member": N_("Member account"),
    "room": N_("Room"),
    "api_token": N_("Integration token"),
    "organisation": N_("Organisation settings"),
    "payment": N_("Payment record"),
    "payment_record": N_("Payment record"),
    "dsr": N_("Data-subject request"),
    "data_subject_request": N_("Data-subject request"),
    "access_log": N_("Access log"),
    "access_log_entry": N_("Access log"),
    "access_log_integrity": N_("Access log"),
    "residency_receipt": N_("Residency receipt"),
    "call_telemetry": N_("Call troubleshooting data"),
    "telemetry": N_("Call troubleshooting data"),
    "compliance report": N_("Compliance report"),
    "attestation": N_("Attestation"),
    "deletion_certificate": N_("Deletion certificate"),
    "network_test": N_("Connection test result"),
    "session": N_("Sign-in"),
}

# Why, for the purposes the service writes; others are shown as written.
PURPOSES: Mapping[str, str] = {
    "provide the service": N_("Providing the service"),
    "compliance audit": N_("Compliance audit"),
    "compliance audit (auditor access)": N_("Compliance audit"),
    "review the access log": N_("Reviewing the access log"),
    "export the access log": N_("Exporting the access log"),
    "check the access log's integrity": N_("Checking the access log's integrity"),
    "data-subject request (access)": N_("Data-subject request: access"),
    "data-subject request (portability)": N_("Data-subject request: portability"),
    "data-subject request (rectification)": N_("Data-subject request: correction"),
    "data-subject request (erasure)": N_("Data-subject request: erasure"),
    "data-subject request (access log extract)": N_("Data-subject request: who accessed the data"),
    "retention purge": N_("Deletion after the retention period"),
    "tamper evidence": N_("Tampering found in the log"),
    "download a compliance report": N_("Downloading a compliance report"),
    "attest a control": N_("Signing an attestation"),
    "withdraw an attestation": N_("Withdrawing an attestation"),
    "log in": N_("Logging in"),
    "video consultation (consent)": N_("Video consultation (with consent)"),
    "create the customer account": N_("Creating the organisation"),
    "undo a failed signup": N_("Undoing a failed signup"),
    "delete the customer account": N_("Removing the organisation"),
    "konsil audit verify": N_("Checking the access log's integrity"),
    "konsil audit checkpoint": N_("Signing a checkpoint of the access log"),
    "konsil audit certificate": N_("Reading the deletion certificate"),
}

REFUSALS: Mapping[str, str] = {
    "not logged in": N_("not logged in"),
    "invalid credentials": N_("invalid sign-in"),
    "role": N_("the role does not allow it"),
    "token scope": N_("the integration token does not allow it"),
    "another organisation": N_("another organisation"),
    "csrf": N_("the form had expired"),
    "auditor access is read-only": N_("auditors may only look"),
    "auditor access ended": N_("the auditor's access had ended"),
}

SUBJECT_KINDS: Mapping[str, str] = {
    "visit": N_("Visit %(ref)s"),
    "member": N_("Member %(ref)s"),
    "dsr": N_("Data-subject request %(ref)s"),
    "payment": N_("Payment record %(ref)s"),
    "call": N_("Call %(ref)s"),
    "room": N_("Room %(ref)s"),
}

NOBODY = "\u2013"  # an en dash: no one, nothing


def short(reference: str) -> str:
    """The first 8 characters of the id in a reference: enough to tell records apart."""
    return reference.split(":", 1)[-1][:8]


@dataclass(frozen=True)
class Names:
    """Names the page may show: the organisation's members (opened for this page, each
    read logged) and its integration tokens' labels, by reference."""

    members: Mapping[str, tuple[str, str]]  # "member:<id>" -> (name, role)
    tokens: Mapping[str, str]  # "token:<id>" -> label
    complete: bool = False  # every current member is among ``members``


NO_NAMES = Names({}, {})


class Words:
    """Entries in one language."""

    def __init__(self, locale: str, names: Names = NO_NAMES, org_id: uuid.UUID | None = None) -> None:
        self.locale = locale
        self.names = names
        self.org_ref = f"org:{org_id}" if org_id else None

    def gettext(self, message: str, **params: object) -> str:
        return gettext(self.locale, message, **params)

    def role(self, role: str) -> str:
        found = ROLES.get(role)
        return self.gettext(found) if found else role

    def actor(self, reference: str, role: str) -> str:
        """Who, in words: "Anna Berg (owner)", "Connected system “Rooms sync”", "Konsil (automatic)"."""
        if reference in self.names.members:
            name, current = self.names.members[reference]
            return self.gettext("%(name)s (%(role)s)", name=name, role=self.role(role or current))
        if reference.startswith("member:"):
            ref = short(reference)
            if self.names.complete:  # every member's name is known: this one was removed
                if not role:
                    return self.gettext("Former member %(ref)s", ref=ref)
                return self.gettext("Former member %(ref)s (%(role)s)", ref=ref, role=self.role(role))
            if not role:
                return self.gettext("Member %(ref)s", ref=ref)
            return self.gettext("Member %(ref)s (%(role)s)", ref=ref, role=self.role(role))
        if reference.startswith("token:"):
            label = self.names.tokens.get(reference)
            if label:
                return self.gettext("Connected system “%(label)s”", label=label)
            return self.gettext("Connected system %(ref)s", ref=short(reference))
        if reference.startswith("visitor:"):
            return self.gettext("Visitor of visit %(ref)s", ref=short(reference))
        if reference == "anonymous":
            return self.gettext("Someone not logged in")
        if reference.startswith("operator:") or role == "operator":
            return self.gettext("Konsil operations")
        if reference.startswith("staff:") or role == "support":
            return self.gettext("Konsil support")
        if reference.startswith(("system", "control-plane")) or role == "system":
            return self.gettext("Konsil (automatic)")
        if self.org_ref and reference == self.org_ref:
            return self.gettext("The organisation")
        return reference

    def on_behalf_of(self, actor: str, behalf: str) -> str:
        """On whose behalf ``actor`` acted, when someone else than themselves: "" otherwise."""
        if not behalf or behalf == actor or actor in ("system", "anonymous") or behalf in ("system", "signup"):
            return ""
        if behalf.startswith("org:"):
            return self.gettext("The organisation")
        if behalf == "anonymous":
            return ""
        return self.actor(behalf, "")

    def action(self, action: str) -> str:
        found = ACTIONS.get(action)
        return self.gettext(found) if found else action

    def data(self, object_type: str) -> str:
        found = OBJECTS.get(object_type)
        return self.gettext(found) if found else object_type.replace("_", " ").capitalize()

    def outcome(self, outcome: str) -> str:
        found = OUTCOMES.get(outcome)
        return self.gettext(found) if found else outcome

    def subject(self, reference: str) -> str:
        """About whom: "Visit 3f2a1b2c", "Member Anna Berg", "The organisation"."""
        if not reference or reference == "*":
            return NOBODY
        if reference in self.names.members:
            return self.gettext("Member %(ref)s", ref=self.names.members[reference][0])
        if reference.startswith("org:"):
            return self.gettext("The organisation")
        if reference == "access_log":
            return self.gettext("The access log")
        kind, _, rest = reference.partition(":")
        found = SUBJECT_KINDS.get(kind)
        if found and rest:
            return self.gettext(found, ref=short(reference))
        return reference

    def purpose(self, purpose: str) -> str:
        """Why, in words; a purpose the service does not write is shown as written."""
        if purpose in PURPOSES:
            return self.gettext(PURPOSES[purpose])
        if purpose.startswith("refused: "):
            reason = purpose.removeprefix("refused: ")
            if reason.endswith("more not logged"):
                return self.gettext("Refused many times: further refusals this minute are not logged")
            said = self.gettext(REFUSALS[reason]) if reason in REFUSALS else reason
            return self.gettext("Refused: %(reason)s", reason=said)
        if purpose.startswith("compliance audit: "):
            why = purpose.removeprefix("compliance audit: ")
            return self.gettext("Compliance audit: %(why)s", why=self.purpose(why))
        if purpose.startswith("compliance evidence"):
            return self.gettext("Collecting compliance evidence")
        if purpose.startswith("konsil audit "):
            return self.gettext("Checking the access log (Konsil operations)")
        return purpose[:1].upper() + purpose[1:] if purpose else NOBODY
