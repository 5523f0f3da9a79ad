"""National eID checks (Norwegian BankID, Danish MitID, Swedish BankID): what a region's
identity broker offers the rest of the platform, whatever broker it uses (Criipto
Verify over OpenID Connect; ``tenants/identity/criipto.py``).

A room may ask its visitors to prove who they are before they wait
(``Room.identity_check``). The flow is OpenID Connect's authorization code flow with
PKCE: ``authorization_url`` sends the visitor's browser to the broker, the broker sends
it back with a code, ``verify`` exchanges the code and checks the ID token.

Two kinds of failure, because the visitor is told different things: ``IdentityRejected``
means the answer cannot be trusted or does not fit (a bad signature, another audience,
an expired token, a nonce that is not ours, a missing claim) and trying the same answer
again cannot help; ``IdentityUnavailable`` means the broker could not be reached or
failed itself (a timeout, a 5xx) and the visitor may simply try again. Neither message
names the person, their national ID number or a credential.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import msgspec

# The eIDs a room may ask for (``Room.identity_check``; "" asks for none).
Eid = Literal["no_bankid", "dk_mitid", "se_bankid"]
EIDS: tuple[Eid, ...] = get_args(Eid)


class VerifiedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Who the eID says the visitor is: personal data, to be sealed at once."""

    eid: Eid
    national_id: str  # fødselsnummer, CPR number or personnummer, digits only
    name: str
    subject: str  # the broker's stable id of the person (the ID token's ``sub``)

    def __repr__(self) -> str:  # never in a log line or a traceback's locals by accident
        return f"VerifiedIdentity(eid={self.eid!r}, national_id=<hidden>, name=<hidden>)"


class IdentityError(Exception):
    """An eID check that did not succeed; ``reason`` names neither the person nor a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdentityRejected(IdentityError):
    """The broker's answer is not to be trusted or does not fit this check."""


class IdentityUnavailable(IdentityError):
    """The broker did not answer in time, or failed itself: try again later."""


class IdentityBroker(Protocol):
    """A region's eID broker."""

    @property
    def description(self) -> str:
        """The broker for an operator's eyes (no credential)."""
        ...

    async def authorization_url(
        self, eid: Eid, *, state: str, nonce: str, code_challenge: str, redirect_uri: str, locale: str
    ) -> str:
        """Where to send the visitor's browser to prove who they are with ``eid``
        (PKCE S256 ``code_challenge``)."""
        ...

    async def verify(
        self, code: str, *, eid: Eid, code_verifier: str, nonce: str, redirect_uri: str
    ) -> VerifiedIdentity:
        """Exchange the code the broker sent back and check its ID token: signature against
        the broker's keys, issuer, audience, expiry, nonce, the eID used."""
        ...


def mask_national_id(national_id: str) -> str:
    """A national ID number as an expert sees it before revealing it: its first two and
    last two characters ("12•••••••89"); a short one is all dots."""
    if len(national_id) < 8:
        return "•" * len(national_id)
    return national_id[:2] + "•" * (len(national_id) - 4) + national_id[-2:]
