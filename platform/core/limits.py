"""Rate limits of the tenant side, where abuse is cheap: member logins, the visitor's
join form, invitations and password-reset mails. Each answers 429 with Retry-After (pages: a human message).

The numbers are the region's settings (``regions.<id>.limits``); counted in the process
(konsil.platform.core.ratelimit): each replica counts its own callers.
"""

from __future__ import annotations

import contextlib

from konsil.platform.core.errors import AppError
from konsil.platform.core.lookup import normalise_email
from konsil.platform.core.ratelimit import RateLimit, too_many_requests
from konsil.platform.core.settings import RegionLimits


class TenantLimits:
    def __init__(self, settings: RegionLimits) -> None:
        # Failed logins: guessing one account's password, and spraying from one address. Only
        # failures count (unknown e-mail addresses too, so the limit reveals nothing).
        self.login_failures_per_account = RateLimit(
            "login failures per account", settings.login_failures_per_account_15_minutes, 15 * 60
        )
        self.login_failures_per_address = RateLimit(
            "login failures per address", settings.login_failures_per_address_minute, 60
        )
        # The visitor's join form writes a visit: per source address, and per room.
        self.joins_per_address = RateLimit("visitor joins per address", settings.joins_per_address_minute, 60)
        self.joins_per_room = RateLimit("visitor joins per room", settings.joins_per_room_minute, 60)
        # Invitations (POST /members): each may hash a password and updates the directory.
        self.invitations_per_organisation = RateLimit(
            "invitations per organisation", settings.invitations_per_organisation_minute, 60
        )
        # Password-reset mails: per e-mail address (no mail-bombing one person) and per
        # source address (no probing many addresses).
        self.password_resets_per_email = RateLimit(
            "password resets per e-mail address", settings.password_resets_per_email_hour, 3600
        )
        self.password_resets_per_address = RateLimit(
            "password resets per address", settings.password_resets_per_address_minute, 60
        )

    def _login_limits(self, email: str, source_address: str) -> tuple[tuple[RateLimit, str], ...]:
        return (
            (self.login_failures_per_account, f"account:{normalise_email(email)}"),
            (self.login_failures_per_address, f"address:{source_address}"),
        )

    def check_login(self, email: str, source_address: str) -> None:
        """Before verifying a password: 429 while the account or the address is over its limit."""
        for limit, key in self._login_limits(email, source_address):
            wait = limit.retry_after(key)
            if wait is not None:
                raise too_many_requests(wait)

    def login_failed(self, email: str, source_address: str) -> None:
        """Count a failed login against the account and the address."""
        for limit, key in self._login_limits(email, source_address):
            with contextlib.suppress(AppError):  # already over: the next attempt is refused
                limit.hit(key)

    def join(self, room_id: object, source_address: str) -> None:
        """Count a visitor's join; 429 when the address or the room is over its limit."""
        address, room = f"address:{source_address}", f"room:{room_id}"
        wait = self.joins_per_address.retry_after(address) or self.joins_per_room.retry_after(room)
        if wait is not None:
            raise too_many_requests(wait)
        self.joins_per_address.hit(address)
        self.joins_per_room.hit(room)

    def invitation(self, org_id: object) -> None:
        self.invitations_per_organisation.hit(f"org:{org_id}")

    def password_reset_source(self, source_address: str) -> None:
        """Count a reset asked from ``source_address``; 429 when it is over its limit."""
        self.password_resets_per_address.hit(f"address:{source_address}")

    def password_reset_email(self, email: str) -> bool:
        """Count a reset mail for ``email``: False when that address had its share (the
        caller then sends nothing, and answers as always)."""
        try:
            self.password_resets_per_email.hit(f"email:{normalise_email(email)}")
        except AppError:
            return False
        return True
